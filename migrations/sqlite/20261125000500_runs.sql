-- Billing runs: which period has been billed, and the lease that lets one process at a time run it.
CREATE TABLE billing_runs (
    period           TEXT PRIMARY KEY,
    status           TEXT NOT NULL CHECK (status IN ('due', 'running', 'done', 'failed')),
    started_at       TEXT,
    finished_at      TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    lease_owner      TEXT,
    lease_expires_at TEXT
);
