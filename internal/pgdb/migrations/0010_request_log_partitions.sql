-- request_log partitioned by UTC day, so that retention drops whole
-- partitions instead of a large DELETE. The gateway creates each day's
-- partition ahead of it (usage/postgres_partitions.go); a row for a day
-- without one lands in the default partition, which is kept small.
ALTER TABLE request_log RENAME TO request_log_unpartitioned;
ALTER INDEX request_log_at RENAME TO request_log_unpartitioned_at;
ALTER INDEX request_log_key_at RENAME TO request_log_unpartitioned_key_at;
ALTER INDEX request_log_at_id RENAME TO request_log_unpartitioned_at_id;
ALTER INDEX request_log_project_at RENAME TO request_log_unpartitioned_project_at;
CREATE TABLE request_log (LIKE request_log_unpartitioned INCLUDING DEFAULTS) PARTITION BY RANGE (at);
CREATE INDEX request_log_at_id ON request_log (at DESC, request_id DESC);
CREATE INDEX request_log_key_at ON request_log (key_id, at DESC);
CREATE INDEX request_log_project_at ON request_log (project, at DESC);
CREATE TABLE request_log_default PARTITION OF request_log DEFAULT;
DO $$
DECLARE d date;
BEGIN
  FOR d IN
    SELECT DISTINCT (at AT TIME ZONE 'UTC')::date FROM request_log_unpartitioned
    UNION SELECT (now() AT TIME ZONE 'UTC')::date + i FROM generate_series(0, 2) AS i
  LOOP
    EXECUTE format('CREATE TABLE request_log_%s PARTITION OF request_log FOR VALUES FROM (%L) TO (%L)',
      to_char(d, 'YYYYMMDD'), (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC'));
  END LOOP;
END $$;
INSERT INTO request_log SELECT * FROM request_log_unpartitioned;
DROP TABLE request_log_unpartitioned;
