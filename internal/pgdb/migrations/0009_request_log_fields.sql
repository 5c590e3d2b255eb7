-- The request log's own fields: the backend that answered, the error code
-- answered, the time to the first token and the whole duration (µs); and
-- indexes for its reads: newest first overall, by key, by project.
ALTER TABLE request_log
  ADD COLUMN backend text NOT NULL DEFAULT '',
  ADD COLUMN error_code text NOT NULL DEFAULT '',
  ADD COLUMN ttft_us bigint NOT NULL DEFAULT 0,
  ADD COLUMN duration_us bigint NOT NULL DEFAULT 0;
CREATE INDEX request_log_at_id ON request_log (at DESC, request_id DESC);
CREATE INDEX request_log_project_at ON request_log (project, at DESC);
