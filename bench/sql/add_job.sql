-- Reference point: enqueueing a job with graphile-worker (no worker runs, so jobs accumulate).
select graphile_worker.add_job('noop', '{}');
