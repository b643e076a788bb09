-- Issue 16: the HTTP intake records a request only when it answers 202 (an
-- answer given inside the wait needs no record of the intake's: the worker's
-- claim makes the row). A 202 is a promise that the request will be applied
-- whatever Redis loses, so its record keeps the task's payload until the
-- request is finished: the reconciler enqueues it again from there
-- (repo.StrandedRequests). The payload names a plate; FinishRequest clears it.
-- The reconciler finds them through requests_pending (created_at, pending).
ALTER TABLE requests ADD COLUMN task_payload bytea;
