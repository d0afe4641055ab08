-- The remote tenants' rate limits (Xero's per organisation, Autotask's hourly share) belong to the
-- tenant, not to a process: every process on the database counts its requests here. One row per
-- request let through; it counts in its budget's windows until a window after it ended (answered,
-- or its lease ran out: a dead process's request comes back), and as in flight until then.
-- `remote_budgets` holds one row per budget, locked by every take so that two processes take
-- their turns one after the other, and the budget's longest window for the metrics.
CREATE TABLE remote_budgets (
    budget      TEXT PRIMARY KEY,
    takes       INTEGER NOT NULL DEFAULT 0,
    window_ms   INTEGER NOT NULL DEFAULT 0,
    window_max  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE remote_requests (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    budget      TEXT NOT NULL,
    holder      TEXT NOT NULL,
    taken_ms    INTEGER NOT NULL,
    ends_ms     INTEGER NOT NULL
);
CREATE INDEX remote_requests_window ON remote_requests (budget, ends_ms);
