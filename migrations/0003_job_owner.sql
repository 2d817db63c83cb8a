-- Users see their own jobs and counts: serve that from an index, not a scan of the queue.
CREATE INDEX jobs_owner ON jobs (owner, state);
