-- Every adjustment document made for an invoice already billed remotely: a Xero credit note or
-- extra invoice, or an Autotask correcting charge. An adjustment is measured against what was
-- already billed (the original plus every earlier adjustment), line by line, so each line's
-- amount, tax type and account is kept here.
CREATE TABLE adjustments (
    id INTEGER PRIMARY KEY,
    invoice_id INTEGER NOT NULL REFERENCES invoices(id),
    kind TEXT NOT NULL CHECK (kind IN ('credit_note', 'extra_invoice', 'correcting_charge')),
    remote_id TEXT NOT NULL,
    reference TEXT NOT NULL,
    status TEXT NOT NULL,
    emailed_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX adjustments_invoice ON adjustments (invoice_id);
CREATE UNIQUE INDEX adjustments_remote ON adjustments (kind, remote_id);

-- The signed amount (micro-units) each adjustment adds to what a line has billed: a credit note's
-- lines are negative, an extra invoice's positive.
CREATE TABLE adjustment_lines (
    id INTEGER PRIMARY KEY,
    adjustment_id INTEGER NOT NULL REFERENCES adjustments(id) ON DELETE CASCADE,
    charge_key TEXT NOT NULL,
    description TEXT NOT NULL,
    amount_micros BIGINT NOT NULL,
    tax_type TEXT,
    account_code TEXT
);
CREATE INDEX adjustment_lines_adjustment ON adjustment_lines (adjustment_id);
