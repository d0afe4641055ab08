-- An entry ops skipped (`rebilld outbox skip ID --reason TEXT`): never sent, closed like a
-- cancelled one, with when, by whom and why (also in the audit log). It is stored as status
-- 'cancelled' with skipped_at set, because SQLite cannot change the status CHECK without
-- rebuilding the table (and the ledger and the entry's own dependency point at it); the store
-- reads such an entry back as 'skipped'.
ALTER TABLE outbox ADD COLUMN skipped_at TIMESTAMPTZ;
ALTER TABLE outbox ADD COLUMN skipped_by TEXT;
ALTER TABLE outbox ADD COLUMN skipped_reason TEXT;
