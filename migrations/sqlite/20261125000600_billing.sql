-- The billing run: local invoices and lines, the outbox of remote actions, the ledger of outcomes.

CREATE TABLE invoice_counter (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    next BIGINT NOT NULL
);

CREATE TABLE invoices (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id     BIGINT NOT NULL REFERENCES customers (id),
    period          TEXT NOT NULL,
    number          TEXT NOT NULL UNIQUE,
    destination     TEXT NOT NULL CHECK (destination IN ('xero', 'autotask')),
    issue_date      TEXT NOT NULL,
    due_date        TEXT NOT NULL,
    currency        TEXT NOT NULL,
    total_micros    BIGINT NOT NULL,
    email_decision  TEXT NOT NULL,
    xero_contact_id TEXT,
    xero_invoice_id TEXT,
    xero_status     TEXT,
    emailed_at      TEXT,
    revision        INTEGER NOT NULL DEFAULT 1,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (customer_id, period)
);
CREATE INDEX invoices_period ON invoices (period);

CREATE TABLE invoice_lines (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    invoice_id          BIGINT NOT NULL REFERENCES invoices (id),
    customer_id         BIGINT NOT NULL,
    period              TEXT NOT NULL,
    charge_key          TEXT NOT NULL,
    position            INTEGER NOT NULL,
    kind                TEXT NOT NULL,
    description         TEXT NOT NULL,
    quantity            TEXT NOT NULL,
    unit_price_micros   BIGINT NOT NULL,
    amount_micros       BIGINT NOT NULL,
    unit_cost_micros    BIGINT NOT NULL,
    autotask_contract_id      BIGINT,
    autotask_product_id       BIGINT,
    autotask_material_code_id BIGINT,
    account_code        TEXT,
    tax_type            TEXT,
    item_code           TEXT,
    source_item_id      BIGINT,
    autotask_charge_id  BIGINT,
    removed             BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE (customer_id, period, charge_key)
);
CREATE INDEX invoice_lines_invoice ON invoice_lines (invoice_id);

CREATE TABLE billing_skips (
    period      TEXT NOT NULL,
    customer_id BIGINT NOT NULL REFERENCES customers (id),
    reason      TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (period, customer_id)
);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    action          TEXT NOT NULL,
    invoice_id      BIGINT NOT NULL REFERENCES invoices (id),
    line_id         BIGINT REFERENCES invoice_lines (id),
    depends_on      BIGINT REFERENCES outbox (id),
    status          TEXT NOT NULL CHECK (status IN ('pending', 'in_flight', 'done', 'failed', 'cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    not_before      TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    claimed_by      TEXT,
    claimed_until   TEXT,
    last_error      TEXT,
    remote_id       TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_invoice ON outbox (invoice_id);

CREATE TABLE ledger (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id       BIGINT NOT NULL REFERENCES outbox (id),
    invoice_id      BIGINT NOT NULL REFERENCES invoices (id),
    line_id         BIGINT,
    system          TEXT NOT NULL CHECK (system IN ('xero', 'autotask')),
    action          TEXT NOT NULL,
    remote_id       TEXT,
    remote_status   TEXT,
    amount_micros   BIGINT,
    requested_at    TEXT NOT NULL,
    completed_at    TEXT NOT NULL,
    outcome         TEXT NOT NULL CHECK (outcome IN ('ok', 'error', 'permanent_error')),
    error           TEXT
);
CREATE INDEX ledger_invoice ON ledger (invoice_id);
