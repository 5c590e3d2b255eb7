-- Prompt tokens written to a backend's cache, by lifetime (Anthropic's
-- prompt caching: five minutes and one hour), within prompt_tokens
-- beside the cache reads (cached_prompt_tokens).
ALTER TABLE usage_hourly
  ADD COLUMN cache_write_5m_tokens bigint NOT NULL DEFAULT 0,
  ADD COLUMN cache_write_1h_tokens bigint NOT NULL DEFAULT 0;
ALTER TABLE request_log
  ADD COLUMN cache_write_5m_tokens bigint NOT NULL DEFAULT 0,
  ADD COLUMN cache_write_1h_tokens bigint NOT NULL DEFAULT 0;
