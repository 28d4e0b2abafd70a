/* kit */ INSERT INTO reconciliation_jobs (id, project_id, name, status, created_by, total_records,
                                           matched_count, unmatched_count, started_at, completed_at,
                                           created_at, updated_at) OVERRIDING SYSTEM VALUE
SELECT g, project_id, kind || ' ' || to_char(to_timestamp(e) AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
       status, created_by, total, matched, CASE WHEN e_end IS NULL THEN 0 ELSE total - matched END,
       to_timestamp(e_start), to_timestamp(e_end), to_timestamp(e),
       to_timestamp(coalesce(e_end, e_start, e))
FROM (SELECT *, floor(total * CASE status WHEN 'completed' THEN 0.75 + 0.25 * u_rate
                                         WHEN 'pending' THEN 0 ELSE 0.5 * u_rate END)::int AS matched,
             CASE WHEN status <> 'pending' THEN e + 1 + 600 * u_wait END AS e_start,
             CASE WHEN status IN ('completed', 'failed', 'cancelled')
                  THEN e + 31 + 600 * u_wait + 7200 * u_run ^ 2 END AS e_end
      FROM (SELECT *, CASE WHEN u_status < 0.80 THEN 'completed' WHEN u_status < 0.88 THEN 'failed'
                           WHEN u_status < 0.90 THEN 'cancelled' WHEN u_status < 0.94 THEN 'running'
                           ELSE 'pending' END AS status,
                   CASE WHEN u_by < 0.7 THEN pg_temp.kit_project_owner(project_id, %(seed)s, %(n_users)s)
                        ELSE other_user END AS created_by,
                   pg_temp.kit_job_epoch(g, project_id, %(seed)s, %(n_projects)s) AS e
            FROM (SELECT g, pg_temp.kit_job_project(g, %(seed)s, %(n_projects)s) AS project_id,
                    pg_temp.kit_pick(g, %(seed)s, 33, %(n_users)s, 2.0) AS other_user,
                    (ARRAY['Daily bank match','Month-end close','Card settlements','Intercompany',
                           'Vendor statements','Payroll check'])
                        [1 + floor(6 * pg_temp.kit_u(g, %(seed)s, 34))::int] AS kind,
                    100 + floor(20000 * pg_temp.kit_u(g, %(seed)s, 35) ^ 3)::int AS total,
                    pg_temp.kit_u(g, %(seed)s, 36) AS u_status, pg_temp.kit_u(g, %(seed)s, 37) AS u_by,
                    pg_temp.kit_u(g, %(seed)s, 38) AS u_rate, pg_temp.kit_u(g, %(seed)s, 39) AS u_wait,
                    pg_temp.kit_u(g, %(seed)s, 30) AS u_run
                  FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g OFFSET 0) AS r
            OFFSET 0) AS s OFFSET 0) AS t
