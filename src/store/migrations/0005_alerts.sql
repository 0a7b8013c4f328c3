-- Alerting (store::sqlite_alerts): the state of every alert, what was notified, every delivery
-- attempt, silences, the evaluator lease, and the EWMA baselines of anomaly rules.

CREATE TABLE alert_state (
    project          TEXT    NOT NULL,
    dedup_key        TEXT    NOT NULL,
    rule             TEXT    NOT NULL,
    group_labels     TEXT    NOT NULL,      -- JSON object
    severity         TEXT    NOT NULL,
    phase            TEXT    NOT NULL,      -- inactive | pending | firing
    since_ms         INTEGER NOT NULL,
    last_notified_ms INTEGER,
    announced        INTEGER NOT NULL,
    value            REAL,
    threshold        REAL,
    summary          TEXT    NOT NULL,
    expr             TEXT    NOT NULL,
    updated_ms       INTEGER NOT NULL,
    PRIMARY KEY (project, dedup_key)
) WITHOUT ROWID;

CREATE TABLE alert_history (
    id           INTEGER PRIMARY KEY,
    project      TEXT    NOT NULL,
    dedup_key    TEXT    NOT NULL,
    rule         TEXT    NOT NULL,
    severity     TEXT    NOT NULL,
    notice       TEXT    NOT NULL,          -- firing | reminder | resolved
    group_labels TEXT    NOT NULL,
    summary      TEXT    NOT NULL,
    expr         TEXT    NOT NULL,
    value        REAL,
    threshold    REAL,
    starts_ms    INTEGER NOT NULL,
    ends_ms      INTEGER,
    at_ms        INTEGER NOT NULL,
    channels     TEXT    NOT NULL,          -- JSON array of the channels it was routed to
    silenced_by  INTEGER                    -- the silence that muted it
);
CREATE INDEX alert_history_by_time ON alert_history (project, at_ms);

CREATE TABLE alert_deliveries (
    id          INTEGER PRIMARY KEY,
    project     TEXT    NOT NULL,
    history_id  INTEGER NOT NULL,
    channel     TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    ok          INTEGER NOT NULL,
    status      INTEGER,
    error       TEXT,
    duration_ms REAL    NOT NULL,
    at_ms       INTEGER NOT NULL
);
CREATE INDEX alert_deliveries_by_time ON alert_deliveries (project, at_ms);

CREATE TABLE alert_silences (
    id         INTEGER PRIMARY KEY,
    project    TEXT    NOT NULL,
    matchers   TEXT    NOT NULL,            -- JSON object label -> value (alertname, severity, group labels)
    until_ms   INTEGER NOT NULL,
    comment    TEXT,
    created_ms INTEGER NOT NULL
);

-- One evaluator per storage: the holder renews its lease every evaluation.
CREATE TABLE alert_lease (
    name     TEXT    PRIMARY KEY,
    holder   TEXT    NOT NULL,
    until_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE anomaly_baselines (
    project    TEXT    NOT NULL,
    key        TEXT    NOT NULL,            -- rule, metric and group
    mean       REAL    NOT NULL,
    variance   REAL    NOT NULL,
    n          INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (project, key)
) WITHOUT ROWID;
