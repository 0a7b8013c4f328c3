-- Drift (issue 5): per-hour distributions of request properties, and named baselines.

-- Lengths of the input and output texts in Unicode scalar values: sent with the event or counted
-- from the texts at ingest, and kept when the texts are not (capture_content = false). Rows
-- written before this migration have NULL: their lengths are length(input) / length(output).
ALTER TABLE requests ADD COLUMN input_chars INTEGER;
ALTER TABLE requests ADD COLUMN output_chars INTEGER;

-- Value counts of the categorical dimensions (model, feature, release, status, error_type of
-- failed requests, attributes.KEY) per UTC hour, by model and feature ('' when absent). Absent
-- labels have no row. Counts are additive (a replaced record subtracts); rows may reach 0 and
-- stay, so that the writer's cardinality cap (store::sqlite, `DriftCaps`) finds again, after a
-- restart, every value that has its own row: at most 100 values per (project, hour,
-- dimension), later ones counted as '(other)'; at most 32 attribute dimensions per
-- (project, hour), later keys not counted.
CREATE TABLE rollup_values_1h (
    project   TEXT    NOT NULL,
    bucket_ms INTEGER NOT NULL,
    dimension TEXT    NOT NULL,
    value     TEXT    NOT NULL,
    model     TEXT    NOT NULL,
    feature   TEXT    NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (project, bucket_ms, dimension, value, model, feature)
) WITHOUT ROWID;

-- Sketches of the numeric dimensions (input_tokens, output_tokens, duration_ms, ttft_ms, cost in
-- USD, input_chars, output_chars) per UTC hour, by model and feature: an encoded SketchSet with
-- one sketch per dimension, merged on upsert; rebuilt from raw rows when a record is replaced.
CREATE TABLE rollup_numeric_1h (
    project   TEXT    NOT NULL,
    bucket_ms INTEGER NOT NULL,
    model     TEXT    NOT NULL,
    feature   TEXT    NOT NULL,
    sketches  BLOB,
    PRIMARY KEY (project, bucket_ms, model, feature)
) WITHOUT ROWID;

-- Named drift baselines; `spec` is JSON, interpreted by the drift module.
CREATE TABLE drift_baselines (
    project    TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    dimension  TEXT    NOT NULL,
    spec       TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (project, name)
) WITHOUT ROWID;

-- The requests already stored are folded into these tables by the same code as ingest, in the
-- same transaction as this migration (store::sqlite::backfill_drift).
