-- The project a key belongs to ('' for none); its limits hold across all
-- of the project's keys.
ALTER TABLE api_keys ADD COLUMN project text NOT NULL DEFAULT '';
