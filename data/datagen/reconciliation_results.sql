/* kit */ INSERT INTO reconciliation_results (id, job_id, left_record_id, right_record_id,
                                              confidence, status, created_at) OVERRIDING SYSTEM VALUE
SELECT g, job_id, left_id,
       CASE WHEN status = 'unmatched' THEN NULL WHEN mod(left_id, 2) = 0 THEN left_id - 1
            ELSE least(left_id + 1, %(n_reconciliation_records)s) END,
       confidence, status,
       to_timestamp(pg_temp.kit_job_epoch(job_id, job_project, %(seed)s, %(n_projects)s) + 60 + 7200 * u_lag)
FROM (SELECT *, pg_temp.kit_job_project(job_id, %(seed)s, %(n_projects)s) AS job_project,
             CASE WHEN confidence >= 0.85 THEN 'matched'
                  WHEN confidence >= 0.6 THEN CASE WHEN u_reject < 0.15 THEN 'rejected' ELSE 'review' END
                  ELSE 'unmatched' END AS status
      FROM (SELECT g, pg_temp.kit_pick(g, %(seed)s, 51, %(n_reconciliation_jobs)s, 1.5) AS job_id,
              pg_temp.kit_pick(g, %(seed)s, 52, %(n_reconciliation_records)s, 1.0) AS left_id,
              round((1 - pg_temp.kit_u(g, %(seed)s, 54) ^ 3)::numeric, 4) AS confidence,
              pg_temp.kit_u(g, %(seed)s, 55) AS u_reject, pg_temp.kit_u(g, %(seed)s, 56) AS u_lag
            FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g OFFSET 0) AS r OFFSET 0) AS s
