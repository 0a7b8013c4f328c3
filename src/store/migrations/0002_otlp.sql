-- OTLP traces. Every span received for a trace is kept (core::span::SpanSummary lists, encoded
-- by store::sqlite), so spans arriving later, in any order, re-assemble the same record.
-- The spans of a trace that became a record live in its request row (`requests.spans`); the
-- trace is then found by its request id (the hex trace id). `otlp_traces` holds the traces
-- still pending (no root span yet: `spans`, `pending_since_ms`) and the traces recorded under
-- another id (`llmwatch.request_id`: `request_id`).
ALTER TABLE requests ADD COLUMN spans BLOB;

CREATE TABLE otlp_traces (
    project          TEXT    NOT NULL,
    trace_id         BLOB    NOT NULL,            -- 16 bytes
    spans            BLOB,                        -- while pending
    span_count       INTEGER NOT NULL,
    request_id       TEXT,                        -- the record it became, when not the hex trace id
    pending_since_ms INTEGER,                     -- first arrival while pending, else NULL
    updated_ms       INTEGER NOT NULL
);
CREATE UNIQUE INDEX otlp_traces_by_id ON otlp_traces (project, trace_id);
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

-- OTLP metric streams (gen_ai.client.* histograms): the last point of each cumulative stream,
-- so the next point adds only its difference.
CREATE TABLE otlp_metric_streams (
    project  TEXT    NOT NULL,
    stream   TEXT    NOT NULL,   -- resource, metric name and attributes
    start_ns INTEGER NOT NULL,
    time_ns  INTEGER NOT NULL,
    count    INTEGER NOT NULL,
    sum      REAL    NOT NULL,
    PRIMARY KEY (project, stream)
) WITHOUT ROWID;

-- Services that send traces: their metrics would count the same requests twice and are ignored.
CREATE TABLE otlp_services (
    project       TEXT    NOT NULL,
    service       TEXT    NOT NULL,
    last_trace_ms INTEGER NOT NULL,
    PRIMARY KEY (project, service)
) WITHOUT ROWID;
