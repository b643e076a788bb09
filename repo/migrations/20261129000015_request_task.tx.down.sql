ALTER TABLE requests DROP COLUMN IF EXISTS task_payload;
