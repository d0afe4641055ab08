-- How many of a rollup's calls are unrated (no plan, or no rate for their type), so that the
-- summary can say so instead of showing a total that silently leaves them out. Rollups written
-- before this count 0 until `rebilld cdr rerate --period` rebuilds their month.
ALTER TABLE call_rollups ADD COLUMN unrated BIGINT NOT NULL DEFAULT 0;
