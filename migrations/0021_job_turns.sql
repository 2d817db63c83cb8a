-- Tiling turns: a runner's every few claims take the harvested job that has waited longest for its
-- pyramids (ordered by the time its harvest ended) before any queued file (app/ingest/jobs.py).
CREATE INDEX jobs_waited ON jobs (state, updated);
