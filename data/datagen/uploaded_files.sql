/* kit */ INSERT INTO uploaded_files (id, project_id, uploaded_by, filename, content_type, file_size,
                                      status, created_at) OVERRIDING SYSTEM VALUE
SELECT g, project_id,
       CASE WHEN u_by < 0.6 THEN pg_temp.kit_project_owner(project_id, %(seed)s, %(n_users)s)
            ELSE other_user END,
       kind || '_' || g || '.' || ext,
       CASE ext WHEN 'csv' THEN 'text/csv' WHEN 'json' THEN 'application/json'
                WHEN 'pdf' THEN 'application/pdf'
                ELSE 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet' END,
       1024 + floor(50000000 * u_size ^ 4)::bigint,
       CASE WHEN u_status < 0.90 THEN 'processed' WHEN u_status < 0.95 THEN 'failed'
            WHEN u_status < 0.98 THEN 'processing' ELSE 'uploaded' END,
       to_timestamp(pg_temp.kit_after(pg_temp.kit_project_epoch(project_id, %(seed)s, %(n_projects)s), u_e))
FROM (SELECT g, pg_temp.kit_pick(g, %(seed)s, 71, %(n_projects)s, 1.5) AS project_id,
        pg_temp.kit_pick(g, %(seed)s, 72, %(n_users)s, 2.0) AS other_user,
        (ARRAY['bank_statement','gl_export','card_settlements','payroll','vendor_invoices','ar_aging'])
            [1 + floor(6 * pg_temp.kit_u(g, %(seed)s, 73))::int] AS kind,
        (ARRAY['csv','csv','xlsx','json','pdf'])[1 + floor(5 * pg_temp.kit_u(g, %(seed)s, 74))::int] AS ext,
        pg_temp.kit_u(g, %(seed)s, 75) AS u_by, pg_temp.kit_u(g, %(seed)s, 76) AS u_size,
        pg_temp.kit_u(g, %(seed)s, 77) AS u_status, pg_temp.kit_u(g, %(seed)s, 78) AS u_e
      FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g OFFSET 0) AS r
