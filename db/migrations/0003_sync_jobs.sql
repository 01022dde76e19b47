-- Repositories followed by the GitHub webhook and `victor sync` (`victor repo add`):
-- repos.source is the clone URL, repos.ref the branch, repos.github_url the key a push
-- delivery's repository.html_url is matched against.
ALTER TABLE repos ADD COLUMN IF NOT EXISTS tracked boolean NOT NULL DEFAULT false;

-- Durable sync jobs, claimed with FOR UPDATE SKIP LOCKED (indexer/sync/jobs.py).
-- At most one pending job per repository: a push for a repository that already has
-- one updates it (the newest `after` wins) instead of queueing more work.
CREATE TABLE IF NOT EXISTS sync_jobs (
    id            bigserial PRIMARY KEY,
    repo_id       int NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    state         text NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'running', 'done', 'failed', 'superseded')),
    reason        text NOT NULL,          -- push | manual | repo add
    after_sha     text,                   -- newest pushed commit (informative: the worker
                                          -- indexes the branch head it fetches)
    pushes        int NOT NULL DEFAULT 1, -- deliveries coalesced into this job
    attempts      int NOT NULL DEFAULT 0,
    max_attempts  int NOT NULL DEFAULT 5,
    run_after     timestamptz NOT NULL DEFAULT now(),  -- retry backoff
    lease_until   timestamptz,            -- a running job whose lease passed is taken again
    worker        text,                   -- host:pid of the worker holding it
    error         text,                   -- last failure, written for the operator
    result        jsonb,                  -- sync summary when done
    superseded_by bigint,                 -- the pending job that took over its work
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS sync_jobs_one_pending ON sync_jobs (repo_id)
    WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS sync_jobs_open ON sync_jobs (run_after)
    WHERE state IN ('pending', 'running');

-- GitHub deliveries that queued work, by X-GitHub-Delivery: a redelivery finds its jobs here.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    delivery    text PRIMARY KEY,
    job_ids     bigint[] NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
