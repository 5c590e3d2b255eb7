-- The kind of usage, as OpenAI's organization usage separates them:
-- 'completions' (chat, responses, legacy completions) or 'embeddings'.
ALTER TABLE usage_hourly ADD COLUMN kind text NOT NULL DEFAULT 'completions';
ALTER TABLE usage_hourly DROP CONSTRAINT usage_hourly_pkey;
ALTER TABLE usage_hourly ADD PRIMARY KEY (key_id, model, kind, hour);
ALTER TABLE request_log ADD COLUMN kind text NOT NULL DEFAULT 'completions';
