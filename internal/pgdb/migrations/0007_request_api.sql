-- The route's API of each logged request: chat, chat/completions,
-- responses, messages, completions, embeddings ('' before this column).
ALTER TABLE request_log ADD COLUMN api text NOT NULL DEFAULT '';
