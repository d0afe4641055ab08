-- An invoice ops voided (`rebilld invoice void NUMBER --reason TEXT`): when, by whom and why (also
-- in the audit log). Its live lines are flagged removed like a resync's, so the push takes them
-- back remotely and reconcile expects nothing of it, and flagged `voided`: the charges they billed
-- are settled (waived), so no later run or resync bills them again (README "Voiding an invoice").
ALTER TABLE invoices ADD COLUMN voided_at TIMESTAMPTZ;
ALTER TABLE invoices ADD COLUMN voided_by TEXT;
ALTER TABLE invoices ADD COLUMN void_reason TEXT;
ALTER TABLE invoice_lines ADD COLUMN voided BOOLEAN NOT NULL DEFAULT FALSE;
