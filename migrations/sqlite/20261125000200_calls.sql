-- Calls (CDRs) and the rate plans that price them.

CREATE TABLE rate_plans (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id  BIGINT NOT NULL REFERENCES services (id),
    version     INTEGER NOT NULL,
    plan_json   TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    UNIQUE (service_id, version)
);

CREATE TABLE calls (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    -- 16 bytes of SHA-256 over the source's call id, or over the row's identifying fields.
    call_key        BLOB NOT NULL UNIQUE,
    service_id      BIGINT,
    user_ref        TEXT NOT NULL,
    started_at      BIGINT NOT NULL,
    duration_secs   INTEGER NOT NULL,
    destination     TEXT NOT NULL,
    call_type       TEXT NOT NULL,
    inbound         BOOLEAN NOT NULL,
    cost_micros     BIGINT,
    price_micros    BIGINT,
    plan_version    INTEGER
);
CREATE INDEX calls_service_time ON calls (service_id, started_at);
CREATE INDEX calls_user_time ON calls (user_ref, started_at);
