-- OTLP traces being (or already) assembled into request records. `spans` holds the summaries
-- of every span received for the trace (core::span::SpanSummary, encoded by store::sqlite), so
-- spans arriving later, in any order, re-assemble the same record.
CREATE TABLE otlp_traces (
    project          TEXT    NOT NULL,
    trace_id         BLOB    NOT NULL,            -- 16 bytes
    spans            BLOB    NOT NULL,
    span_count       INTEGER NOT NULL,
    request_id       TEXT,                        -- the record it became; NULL while pending
    pending_since_ms INTEGER,                     -- first arrival while pending, else NULL
    updated_ms       INTEGER NOT NULL,
    PRIMARY KEY (project, trace_id)
) WITHOUT ROWID;
CREATE INDEX otlp_traces_pending ON otlp_traces (pending_since_ms)
    WHERE pending_since_ms IS NOT NULL;

-- Scores of requests (evaluations), by name and source; a score may arrive before its request.
CREATE TABLE scores (
    project    TEXT    NOT NULL,
    request_id TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    value      REAL    NOT NULL,
    comment    TEXT,
    ts_ms      INTEGER NOT NULL,
    PRIMARY KEY (project, request_id, name, source)
) WITHOUT ROWID;
