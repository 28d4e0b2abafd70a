/* kit */ INSERT INTO reconciliation_matches (id, project_id, job_id, left_record_id, right_record_id,
                                              confidence, match_type, created_at) OVERRIDING SYSTEM VALUE
SELECT g, job_project, job_id, 2 * pair - 1, 2 * pair, round((1 - 0.65 * u_conf ^ 6)::numeric, 4),
       CASE WHEN u_type < 0.5 THEN 'exact' WHEN u_type < 0.75 THEN 'rule'
            WHEN u_type < 0.95 THEN 'fuzzy' ELSE 'manual' END,
       to_timestamp(pg_temp.kit_job_epoch(job_id, job_project, %(seed)s, %(n_projects)s) + 60 + 7200 * u_lag)
FROM (SELECT *, pg_temp.kit_job_project(job_id, %(seed)s, %(n_projects)s) AS job_project
      FROM (SELECT g, pg_temp.kit_pick(g, %(seed)s, 61, %(n_reconciliation_jobs)s, 1.5) AS job_id,
              pg_temp.kit_pick(g, %(seed)s, 62, %(n_reconciliation_records)s / 2, 1.0) AS pair,
              pg_temp.kit_u(g, %(seed)s, 64) AS u_conf, pg_temp.kit_u(g, %(seed)s, 65) AS u_type,
              pg_temp.kit_u(g, %(seed)s, 66) AS u_lag
            FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g OFFSET 0) AS r OFFSET 0) AS s
