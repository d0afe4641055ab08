-- Per service, local day (business time zone), user and call type: the month's summary is read from
-- these few thousand rows instead of aggregating every call. Kept by the import (inserted calls
-- only) and rebuilt by `cdr rerate`.
CREATE TABLE call_rollups (
    service_id   BIGINT NOT NULL,
    day          TEXT NOT NULL,
    user_ref     TEXT NOT NULL,
    call_type    TEXT NOT NULL,
    calls        BIGINT NOT NULL,
    seconds      BIGINT NOT NULL,
    cost_micros  BIGINT NOT NULL,
    price_micros BIGINT NOT NULL,
    PRIMARY KEY (service_id, day, user_ref, call_type)
);
