-- Assignments keep their history with effective dates: `ends_on` is the first day the service is
-- no longer held (set when it is unassigned). A call belongs to the customer whose assignment
-- covered the day it started; a fee is owed for the days from `starts_on` up to `ends_on`.
-- Assignments unassigned before this column existed end on the day they were last changed.
ALTER TABLE assignments ADD COLUMN ends_on TEXT;
UPDATE assignments SET ends_on = substr(CAST(changed_at AS TEXT), 1, 10) WHERE state = 'unassigned';
-- The last day the assignment came back from the trash can: what it owes from before then is not
-- billed late (a run left it off while it was excluded).
ALTER TABLE assignments ADD COLUMN restored_on TEXT;
