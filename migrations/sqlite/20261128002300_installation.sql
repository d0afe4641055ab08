-- This installation's identity: one random id, made the first time rebilld needs it (the first
-- start of a run, a push or the daemon) and kept by backups. Every Idempotency-Key sent to Xero
-- begins with it, so two databases on the same Xero organisation never share a key (Xero would
-- answer the second with the first one's reply).
CREATE TABLE installation (
    singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
    id         TEXT NOT NULL,
    created_at TEXT NOT NULL
);
