-- The quality axis (store::sqlite_quality).

-- Per-request quality: the effective score per name, the composite, and the request's labels
-- as they were when its contribution went into rollup_quality_1h (so it can be subtracted
-- exactly). ts_ms IS NULL: scores whose request has not arrived yet.
CREATE TABLE request_quality (
    project    TEXT    NOT NULL,
    request_id TEXT    NOT NULL,
    ts_ms      INTEGER,
    model      TEXT,
    feature    TEXT,                        -- '' for none
    release    TEXT,                        -- '' for none
    scores     TEXT    NOT NULL,            -- JSON object name -> value
    composite  REAL,
    streaked   INTEGER NOT NULL DEFAULT 0,  -- its composite entered its feature's streak
    PRIMARY KEY (project, request_id)
) WITHOUT ROWID;
CREATE INDEX request_quality_by_time ON request_quality (project, ts_ms)
    WHERE ts_ms IS NOT NULL;

-- Score histograms per hour (core::quality::ScoreHist: 0.01 buckets and an exact sum), per
-- score name plus '(composite)' and '(scored)' (the count of scored requests).
CREATE TABLE rollup_quality_1h (
    project   TEXT    NOT NULL,
    bucket_ms INTEGER NOT NULL,
    model     TEXT    NOT NULL,
    feature   TEXT    NOT NULL,
    release   TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    count     INTEGER NOT NULL,
    hist      BLOB    NOT NULL,
    PRIMARY KEY (project, bucket_ms, model, feature, release, name)
) WITHOUT ROWID;

-- The same per UTC day, so a month reads 30 rows per series instead of 720.
CREATE TABLE rollup_quality_1d (
    project   TEXT    NOT NULL,
    bucket_ms INTEGER NOT NULL,
    model     TEXT    NOT NULL,
    feature   TEXT    NOT NULL,
    release   TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    count     INTEGER NOT NULL,
    hist      BLOB    NOT NULL,
    PRIMARY KEY (project, bucket_ms, model, feature, release, name)
) WITHOUT ROWID;

-- The live escalation streak of each feature, in the order composites became known.
CREATE TABLE quality_streaks (
    project   TEXT    NOT NULL,
    feature   TEXT    NOT NULL,
    current   INTEGER NOT NULL,
    longest   INTEGER NOT NULL,
    escalated INTEGER NOT NULL,
    run       TEXT    NOT NULL,             -- JSON [[request_id, ts_ms, composite], ...]
    PRIMARY KEY (project, feature)
) WITHOUT ROWID;

CREATE TABLE quality_escalations (
    id             INTEGER PRIMARY KEY,
    project        TEXT    NOT NULL,
    feature        TEXT    NOT NULL,
    raised_ms      INTEGER NOT NULL,        -- time of the request that completed the run
    detected_ms    INTEGER NOT NULL,        -- wall-clock time llmwatch noticed it
    streak         INTEGER NOT NULL,
    threshold      REAL    NOT NULL,
    request_ids    TEXT    NOT NULL,        -- JSON array, oldest first
    mean_composite REAL    NOT NULL,
    first_ts_ms    INTEGER NOT NULL,
    last_ts_ms     INTEGER NOT NULL
);
CREATE INDEX quality_escalations_by_time ON quality_escalations (project, raised_ms);

CREATE TABLE feedback (
    id          INTEGER PRIMARY KEY,
    project     TEXT    NOT NULL,
    feedback_id TEXT,                       -- the client's id, for idempotent retries
    request_id  TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    comment     TEXT,
    correction  TEXT,
    user_id     TEXT,
    ts_ms       INTEGER NOT NULL,
    received_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX feedback_by_client_id ON feedback (project, feedback_id)
    WHERE feedback_id IS NOT NULL;
CREATE INDEX feedback_by_time ON feedback (project, ts_ms);
CREATE INDEX feedback_by_request ON feedback (project, request_id);

-- Composite runs per feature and hour (core::quality::RunSummary at `threshold`), so a range's
-- streak composes from hours instead of reading every request.
CREATE TABLE rollup_streak_1h (
    project   TEXT    NOT NULL,
    feature   TEXT    NOT NULL,
    bucket_ms INTEGER NOT NULL,
    n         INTEGER NOT NULL,
    prefix    INTEGER NOT NULL,
    suffix    INTEGER NOT NULL,
    longest   INTEGER NOT NULL,
    threshold REAL    NOT NULL,
    last_ts   INTEGER NOT NULL,            -- the hour's last composite, by (ts_ms, request_id)
    last_id   TEXT    NOT NULL,
    PRIMARY KEY (project, feature, bucket_ms)
) WITHOUT ROWID;
CREATE INDEX request_quality_runs ON request_quality (project, feature, ts_ms, request_id)
    WHERE composite IS NOT NULL;
