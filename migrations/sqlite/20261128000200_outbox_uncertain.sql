-- An outbox entry whose request may have reached the remote (sent, and no answer known) is
-- *uncertain* from the moment it was sent: before anything is sent again the remote is read (Xero by
-- Reference or the invoice's sent state, Autotask by the charge's marker after a settle time).
-- Cleared only when the outcome is known.
ALTER TABLE outbox ADD COLUMN uncertain_since TEXT;
