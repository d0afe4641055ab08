-- Prices with effective dates: a service's monthly price and a recurring item's monthly amount
-- are histories. A row is in force from `effective_from` (NULL: since the beginning) until the
-- next row of the same service or item; a fee or item is owed day by day at the price in force.
-- services.monthly_price_micros and items.amount_micros keep the newest price (the catalogue's).
CREATE TABLE service_prices (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id           BIGINT NOT NULL REFERENCES services (id),
    effective_from       TEXT,
    monthly_price_micros BIGINT NOT NULL,
    created_at           TEXT NOT NULL
);
CREATE UNIQUE INDEX service_prices_day ON service_prices (service_id, effective_from);
CREATE UNIQUE INDEX service_prices_beginning ON service_prices (service_id) WHERE effective_from IS NULL;

CREATE TABLE item_prices (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id              BIGINT NOT NULL REFERENCES items (id),
    effective_from       TEXT,
    amount_micros        BIGINT NOT NULL,
    created_at           TEXT NOT NULL
);
CREATE UNIQUE INDEX item_prices_day ON item_prices (item_id, effective_from);
CREATE UNIQUE INDEX item_prices_beginning ON item_prices (item_id) WHERE effective_from IS NULL;

-- Existing prices: one row each, in force from the beginning.
INSERT INTO service_prices (service_id, effective_from, monthly_price_micros, created_at)
    SELECT id, NULL, monthly_price_micros, created_at FROM services;
INSERT INTO item_prices (item_id, effective_from, amount_micros, created_at)
    SELECT id, NULL, amount_micros, created_at FROM items WHERE kind = 'recurring';
