-- Rate plans shared by services: named plans (versioned like a service's own), which services
-- use which, and the default plan of every service with no plan of its own.
CREATE TABLE shared_rate_plans (
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    plan_json   TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    created_by  TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE service_shared_plan (
    service_id  BIGINT PRIMARY KEY REFERENCES services (id),
    name        TEXT NOT NULL
);
CREATE TABLE default_rate_plan (
    only_row    INTEGER PRIMARY KEY CHECK (only_row = 1),
    name        TEXT NOT NULL
);
