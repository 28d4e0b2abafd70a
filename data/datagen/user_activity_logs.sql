/* kit */ INSERT INTO user_activity_logs (id, user_id, activity_type, description, created_at)
OVERRIDING SYSTEM VALUE
SELECT g, user_id, activity_type, initcap(replace(activity_type, '_', ' ')), to_timestamp(e)
FROM (SELECT g, user_id, e,
             CASE WHEN u_type < 0.30 THEN 'login' WHEN u_type < 0.65 THEN 'view_project'
                  WHEN u_type < 0.80 THEN 'run_job' WHEN u_type < 0.88 THEN 'upload_file'
                  WHEN u_type < 0.93 THEN 'export_report' ELSE 'logout' END AS activity_type
      FROM (SELECT g, pg_temp.kit_pick(g, %(seed)s, 91, %(n_users)s, 2.0) AS user_id,
              pg_temp.kit_u(g, %(seed)s, 92) AS u_type,
              pg_temp.kit_epoch(g, %(n_user_activity_logs)s, %(seed)s, 93) AS e
            FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g OFFSET 0) AS r OFFSET 0) AS s
