-- The source (the mapping's `source`) each call came from, and the days each source has calls on:
-- when a PBX's file and a carrier's file hold the same calls, an import whose days another source
-- already covers looks for each call's twin (same user, start second and duration, another
-- source) and leaves it out instead of billing the call twice. Calls imported before this have
-- no source and are never taken for twins.
ALTER TABLE calls ADD COLUMN source TEXT;
CREATE TABLE call_source_days (
    source TEXT NOT NULL,
    day    BIGINT NOT NULL,
    PRIMARY KEY (day, source)
);
