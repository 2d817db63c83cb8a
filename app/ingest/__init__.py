"""Files into the catalog: the pipeline for one job, the job queue, and the ways files arrive."""
