-- Autotask's threads per endpoint belong to the tenant, not to a process: every process on the
-- database takes one of these slots (a lease, so a dead holder's slot comes back) before a request.
CREATE TABLE autotask_threads (
    endpoint    TEXT NOT NULL,
    slot        INTEGER NOT NULL,
    holder      TEXT,
    held_until  TEXT,
    PRIMARY KEY (endpoint, slot)
);
