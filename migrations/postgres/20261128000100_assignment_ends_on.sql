-- Assignments keep their history with effective dates: `ends_on` is the first day the service is
-- no longer held (set when it is unassigned). A call belongs to the customer whose assignment
-- covered the day it started; a fee is owed for the days from `starts_on` up to `ends_on`.
-- Assignments unassigned before this column existed end on the day they were last changed.
ALTER TABLE assignments ADD COLUMN ends_on DATE;
UPDATE assignments SET ends_on = CAST(changed_at AS DATE) WHERE state = 'unassigned';
