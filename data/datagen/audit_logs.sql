/* kit */ INSERT INTO audit_logs (id, user_id, action, resource_type, resource_id, ip_address,
                                  created_at) OVERRIDING SYSTEM VALUE
SELECT g, CASE WHEN u_system >= 0.05 THEN user_id END,
       CASE WHEN u_action < 0.50 THEN 'view' WHEN u_action < 0.75 THEN 'update'
            WHEN u_action < 0.90 THEN 'create' WHEN u_action < 0.97 THEN 'export' ELSE 'delete' END,
       resource_type, pg_temp.kit_pick(g, %(seed)s, 85, n_resource, 1.5),
       ('10.' || (ip >> 16) || '.' || ((ip >> 8) & 255) || '.' || (ip & 255))::inet, to_timestamp(e)
FROM (SELECT *, CASE resource_type WHEN 'project' THEN %(n_projects)s
                    WHEN 'reconciliation_job' THEN %(n_reconciliation_jobs)s
                    WHEN 'data_source' THEN %(n_data_sources)s WHEN 'user' THEN %(n_users)s
                    ELSE %(n_uploaded_files)s END::bigint AS n_resource
      FROM (SELECT *, CASE WHEN u_type < 0.35 THEN 'project' WHEN u_type < 0.70 THEN 'reconciliation_job'
                           WHEN u_type < 0.80 THEN 'data_source' WHEN u_type < 0.90 THEN 'user'
                           ELSE 'uploaded_file' END AS resource_type
            FROM (SELECT g, pg_temp.kit_pick(g, %(seed)s, 81, %(n_users)s, 2.0) AS user_id,
                    pg_temp.kit_u(g, %(seed)s, 82) AS u_system, pg_temp.kit_u(g, %(seed)s, 83) AS u_action,
                    pg_temp.kit_u(g, %(seed)s, 84) AS u_type,
                    floor(16777216 * pg_temp.kit_u(g, %(seed)s, 86))::int AS ip,
                    pg_temp.kit_epoch(g, %(n_audit_logs)s, %(seed)s, 87) AS e
                  FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g OFFSET 0) AS r
            OFFSET 0) AS s OFFSET 0) AS t
