-- Autotask's field definitions (with their picklists), as read, per API user and entity: every
-- `service assign` and `item add` validates against them, and they change rarely, so they are
-- read again only once `autotask.field_cache_secs` have passed (on the client's clock).
CREATE TABLE autotask_field_cache (
    username    TEXT NOT NULL,
    entity      TEXT NOT NULL,
    body        TEXT NOT NULL,
    read_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (username, entity)
);
