-- Reference point: graphile-worker's batch enqueue, 100 jobs in one call (no worker runs this task, so jobs accumulate).
select count(*) from graphile_worker.add_jobs(array(select ('noop', '{}', null, null, null, null, null, null)::graphile_worker.job_spec from generate_series(1, 100)));
