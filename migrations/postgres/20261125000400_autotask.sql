-- The Autotask API user's zone (its API base URL), looked up with zoneInformation and re-resolved on 401.
CREATE TABLE autotask_zone (
    username    TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    resolved_at TIMESTAMPTZ NOT NULL
);
-- Names of contracts, products and material codes, cached for display.
CREATE TABLE autotask_names (
    kind      TEXT NOT NULL,
    remote_id BIGINT NOT NULL,
    name      TEXT NOT NULL,
    cached_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, remote_id)
);
