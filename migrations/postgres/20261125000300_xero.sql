-- Xero OAuth2 tokens (one organisation) and the day's request budget.
CREATE TABLE xero_tokens (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    grant_type        TEXT NOT NULL,
    access_token      TEXT,
    access_expires_at TIMESTAMPTZ,
    refresh_token     TEXT,
    tenant_id         TEXT,
    refresh_count     BIGINT NOT NULL DEFAULT 0,
    refreshing_by     TEXT,
    refreshing_until  TIMESTAMPTZ,
    updated_at        TIMESTAMPTZ NOT NULL
);
