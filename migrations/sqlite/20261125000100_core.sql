-- Core: customers, the service catalogue, assignments, items, audit.
-- Money is stored as whole micro-units (BIGINT), times as UTC.

CREATE TABLE rebill_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO rebill_meta (key, value) VALUES ('application', 'rebill');

CREATE TABLE customers (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    external_ref        TEXT UNIQUE,
    name                TEXT NOT NULL,
    enabled             BOOLEAN NOT NULL DEFAULT TRUE,
    target_kind         TEXT NOT NULL CHECK (target_kind IN ('xero', 'autotask')),
    xero_contact_id     TEXT,
    autotask_company_id BIGINT,
    email               TEXT,
    phone               TEXT,
    address             TEXT,
    city                TEXT,
    state               TEXT,
    postcode            TEXT,
    country             TEXT,
    tax_number          TEXT,
    payment_terms_days  INTEGER CHECK (payment_terms_days BETWEEN 0 AND 365),
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    CHECK ((target_kind = 'autotask') = (autotask_company_id IS NOT NULL)),
    CHECK (target_kind = 'xero' OR xero_contact_id IS NULL)
);
CREATE UNIQUE INDEX customers_autotask_company ON customers (autotask_company_id) WHERE autotask_company_id IS NOT NULL;

CREATE TABLE services (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    external_ref        TEXT NOT NULL UNIQUE,
    parent_id           BIGINT REFERENCES services (id),
    name                TEXT NOT NULL,
    kind                TEXT NOT NULL DEFAULT 'voip',
    rebill_enabled      BOOLEAN NOT NULL DEFAULT FALSE,
    monthly_price_micros BIGINT NOT NULL DEFAULT 0,
    monthly_cost_micros  BIGINT NOT NULL DEFAULT 0,
    xero_account_code   TEXT,
    xero_tax_type       TEXT,
    xero_item_code      TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    CHECK (parent_id IS NULL OR parent_id <> id)
);
CREATE INDEX services_parent ON services (parent_id);

CREATE TABLE service_users (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id  BIGINT NOT NULL REFERENCES services (id),
    user_ref    TEXT NOT NULL UNIQUE,
    label       TEXT
);
CREATE INDEX service_users_service ON service_users (service_id);

CREATE TABLE assignments (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id          BIGINT NOT NULL REFERENCES services (id),
    customer_id         BIGINT NOT NULL REFERENCES customers (id),
    state               TEXT NOT NULL CHECK (state IN ('assigned', 'excluded', 'unassigned')),
    starts_on           TEXT NOT NULL,
    autotask_contract_id      BIGINT,
    autotask_product_id       BIGINT,
    autotask_material_code_id BIGINT,
    assigned_at         TEXT NOT NULL,
    assigned_by         TEXT NOT NULL,
    changed_at          TEXT NOT NULL,
    changed_by          TEXT NOT NULL,
    CHECK ((autotask_contract_id IS NULL) = (autotask_product_id IS NULL)
       AND (autotask_contract_id IS NULL) = (autotask_material_code_id IS NULL))
);
-- At most one live (ASSIGNED or EXCLUDED) assignment per service.
CREATE UNIQUE INDEX assignments_one_live_per_service ON assignments (service_id) WHERE state <> 'unassigned';
CREATE INDEX assignments_customer ON assignments (customer_id);

CREATE TABLE items (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id     BIGINT NOT NULL REFERENCES customers (id),
    kind            TEXT NOT NULL CHECK (kind IN ('once', 'recurring')),
    description     TEXT NOT NULL,
    amount_micros   BIGINT NOT NULL,
    starts_on       TEXT,
    autotask_contract_id      BIGINT,
    autotask_product_id       BIGINT,
    autotask_material_code_id BIGINT,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'invoiced', 'active', 'removed')),
    invoiced_period TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    CHECK ((kind = 'once' AND status IN ('pending', 'invoiced', 'removed'))
        OR (kind = 'recurring' AND status IN ('active', 'removed'))),
    CHECK ((status = 'invoiced') = (invoiced_period IS NOT NULL))
);
CREATE INDEX items_customer ON items (customer_id);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    entity      TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    action      TEXT NOT NULL,
    before_json TEXT,
    after_json  TEXT
);
CREATE INDEX audit_log_entity ON audit_log (entity, entity_id);
