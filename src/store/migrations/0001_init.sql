-- Raw request records. cost_nanos is NULL when the model has no price (unpriced, never $0).
CREATE TABLE requests (
    project             TEXT    NOT NULL,
    request_id          TEXT    NOT NULL,
    ts_ms               INTEGER NOT NULL,
    model               TEXT    NOT NULL,
    provider            TEXT,
    input_tokens        INTEGER NOT NULL,
    output_tokens       INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    cache_write_tokens  INTEGER NOT NULL,
    reasoning_tokens    INTEGER NOT NULL,
    cost_nanos          INTEGER,
    user_id             TEXT,
    feature             TEXT,
    session_id          TEXT,
    release             TEXT,
    status              TEXT    NOT NULL,
    error_type          TEXT,
    duration_ms         REAL    NOT NULL,
    unaccounted_ms      REAL    NOT NULL, -- duration minus the sum of stages, >= 0
    ttft_ms             REAL,
    stages              TEXT,   -- JSON object stage -> ms, NULL when empty
    attributes          TEXT,   -- JSON object key -> value, NULL when empty
    input               TEXT,
    output              TEXT
);
CREATE UNIQUE INDEX requests_by_id ON requests (project, request_id);
CREATE INDEX requests_by_time ON requests (project, ts_ms);

-- Rollups: additive totals per bucket (bucket_ms = start of the UTC-aligned minute, hour or day).
-- Absent labels are '' (validation rejects empty labels). Series rows also carry `sketches`: the
-- encoded latency sketches (duration, ttft, stage:NAME; core::sketch), merged on upsert.
CREATE TABLE rollup_series_1m (
    project TEXT NOT NULL, bucket_ms INTEGER NOT NULL,
    model TEXT NOT NULL, feature TEXT NOT NULL, release TEXT NOT NULL,
    requests INTEGER NOT NULL, errors INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL, cache_write_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL, cost_nanos INTEGER NOT NULL,
    unpriced_requests INTEGER NOT NULL, unpriced_tokens INTEGER NOT NULL,
    duration_ms_sum REAL NOT NULL, unaccounted_ms_sum REAL NOT NULL,
    sketches BLOB,
    PRIMARY KEY (project, bucket_ms, model, feature, release)
) WITHOUT ROWID;

CREATE TABLE rollup_series_1h (
    project TEXT NOT NULL, bucket_ms INTEGER NOT NULL,
    model TEXT NOT NULL, feature TEXT NOT NULL, release TEXT NOT NULL,
    requests INTEGER NOT NULL, errors INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL, cache_write_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL, cost_nanos INTEGER NOT NULL,
    unpriced_requests INTEGER NOT NULL, unpriced_tokens INTEGER NOT NULL,
    duration_ms_sum REAL NOT NULL, unaccounted_ms_sum REAL NOT NULL,
    sketches BLOB,
    PRIMARY KEY (project, bucket_ms, model, feature, release)
) WITHOUT ROWID;

CREATE TABLE rollup_series_1d (
    project TEXT NOT NULL, bucket_ms INTEGER NOT NULL,
    model TEXT NOT NULL, feature TEXT NOT NULL, release TEXT NOT NULL,
    requests INTEGER NOT NULL, errors INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL, cache_write_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL, cost_nanos INTEGER NOT NULL,
    unpriced_requests INTEGER NOT NULL, unpriced_tokens INTEGER NOT NULL,
    duration_ms_sum REAL NOT NULL, unaccounted_ms_sum REAL NOT NULL,
    sketches BLOB,
    PRIMARY KEY (project, bucket_ms, model, feature, release)
) WITHOUT ROWID;

CREATE TABLE rollup_user_1h (
    project TEXT NOT NULL, bucket_ms INTEGER NOT NULL, user_id TEXT NOT NULL,
    requests INTEGER NOT NULL, errors INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL, cache_write_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL, cost_nanos INTEGER NOT NULL,
    unpriced_requests INTEGER NOT NULL, unpriced_tokens INTEGER NOT NULL,
    duration_ms_sum REAL NOT NULL, unaccounted_ms_sum REAL NOT NULL,
    PRIMARY KEY (project, bucket_ms, user_id)
) WITHOUT ROWID;

-- Failed requests only, by error type.
CREATE TABLE rollup_errors_1m (
    project TEXT NOT NULL, bucket_ms INTEGER NOT NULL,
    model TEXT NOT NULL, feature TEXT NOT NULL, release TEXT NOT NULL, error_type TEXT NOT NULL,
    requests INTEGER NOT NULL, errors INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL, cache_write_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL, cost_nanos INTEGER NOT NULL,
    unpriced_requests INTEGER NOT NULL, unpriced_tokens INTEGER NOT NULL,
    duration_ms_sum REAL NOT NULL, unaccounted_ms_sum REAL NOT NULL,
    PRIMARY KEY (project, bucket_ms, model, feature, release, error_type)
) WITHOUT ROWID;

CREATE TABLE rollup_errors_1h (
    project TEXT NOT NULL, bucket_ms INTEGER NOT NULL,
    model TEXT NOT NULL, feature TEXT NOT NULL, release TEXT NOT NULL, error_type TEXT NOT NULL,
    requests INTEGER NOT NULL, errors INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL, cache_write_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL, cost_nanos INTEGER NOT NULL,
    unpriced_requests INTEGER NOT NULL, unpriced_tokens INTEGER NOT NULL,
    duration_ms_sum REAL NOT NULL, unaccounted_ms_sum REAL NOT NULL,
    PRIMARY KEY (project, bucket_ms, model, feature, release, error_type)
) WITHOUT ROWID;
