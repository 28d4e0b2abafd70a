/* kit */ INSERT INTO data_sources (id, project_id, name, source_type, status, is_active,
                                    created_at, updated_at) OVERRIDING SYSTEM VALUE
SELECT g, project_id, kind || ' #' || g,
       CASE WHEN u_type < 0.4 THEN 'csv' WHEN u_type < 0.7 THEN 'api'
            WHEN u_type < 0.9 THEN 'database' ELSE 'sftp' END,
       status, status <> 'disconnected', to_timestamp(e), to_timestamp(pg_temp.kit_after(e, u_upd))
FROM (SELECT *, CASE WHEN u_status < 0.85 THEN 'connected' WHEN u_status < 0.90 THEN 'syncing'
                     WHEN u_status < 0.95 THEN 'error' ELSE 'disconnected' END AS status,
             pg_temp.kit_after(pg_temp.kit_project_epoch(project_id, %(seed)s, %(n_projects)s), u_e) AS e
      FROM (SELECT g, pg_temp.kit_ds_project(g, %(seed)s, %(n_projects)s) AS project_id,
              (ARRAY['Bank feed','ERP export','Card processor','Payroll file','GL extract','Billing system'])
                  [1 + floor(6 * pg_temp.kit_u(g, %(seed)s, 22))::int] AS kind,
              pg_temp.kit_u(g, %(seed)s, 23) AS u_type, pg_temp.kit_u(g, %(seed)s, 24) AS u_status,
              pg_temp.kit_u(g, %(seed)s, 25) AS u_e, pg_temp.kit_u(g, %(seed)s, 26) AS u_upd
            FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g OFFSET 0) AS r OFFSET 0) AS s
