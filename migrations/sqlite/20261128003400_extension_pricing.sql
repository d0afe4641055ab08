-- Per-extension pricing (issue 14). An extension's kind, by its user_ref: kept apart from
-- service_users because a service import replaces its users (a kind survives a re-import); a user
-- with no row here is 'standard'.
CREATE TABLE extension_kinds (
    user_ref    TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('standard', 'advanced')),
    updated_at  TEXT NOT NULL
);

-- A plan's monthly prices per extension kind (JSON, with effective dates), versioned with it.
ALTER TABLE rate_plans ADD COLUMN extensions_json TEXT;
ALTER TABLE shared_rate_plans ADD COLUMN extensions_json TEXT;

-- What a month is billed with, frozen by its first run: per service, the count of each kind and
-- the plan's extension prices then. A billed month keeps them whatever changes later (users
-- added, kinds changed, a new plan version, another plan): a resync of it bills the same.
CREATE TABLE extension_periods (
    period      TEXT PRIMARY KEY,
    frozen_at   TEXT NOT NULL
);
CREATE TABLE extension_months (
    period       TEXT NOT NULL REFERENCES extension_periods (period),
    service_id   BIGINT NOT NULL REFERENCES services (id),
    counts_json  TEXT NOT NULL,
    prices_json  TEXT NOT NULL,
    PRIMARY KEY (period, service_id)
);
