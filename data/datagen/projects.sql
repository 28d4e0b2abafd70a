/* kit */ INSERT INTO projects (id, name, description, owner_id, status, is_active,
                                created_at, updated_at) OVERRIDING SYSTEM VALUE
SELECT g, company || ' ' || topic || ' ' || region,
       'Reconciles ' || lower(topic) || ' for ' || company || ' ' || region || ' entities',
       owner_id, status, status IN ('active', 'draft'), to_timestamp(e),
       to_timestamp(pg_temp.kit_after(e, u_upd))
FROM (SELECT *, CASE WHEN u_status < 0.80 THEN 'active' WHEN u_status < 0.92 THEN 'archived'
                     WHEN u_status < 0.98 THEN 'draft' ELSE 'suspended' END AS status
      FROM (SELECT g, pg_temp.kit_project_owner(g, %(seed)s, %(n_users)s) AS owner_id,
              (ARRAY['Acme','Globex','Initech','Umbrella','Hooli','Stark Industries','Wayne Enterprises',
                     'Wonka','Soylent','Tyrell','Cyberdyne','Aperture','Massive Dynamic','Vandelay',
                     'Dunder Mifflin','Pied Piper','Oscorp','Gringotts','Monarch','Nakatomi'])
                  [1 + floor(20 * pg_temp.kit_u(g, %(seed)s, 14))::int] AS company,
              (ARRAY['Bank Reconciliation','Card Settlements','Intercompany','Accounts Payable',
                     'Accounts Receivable','Payroll','Treasury','Revenue'])
                  [1 + floor(8 * pg_temp.kit_u(g, %(seed)s, 15))::int] AS topic,
              (ARRAY['EMEA','NA','LATAM','APAC'])[1 + floor(4 * pg_temp.kit_u(g, %(seed)s, 18))::int] AS region,
              pg_temp.kit_u(g, %(seed)s, 16) AS u_status, pg_temp.kit_u(g, %(seed)s, 17) AS u_upd,
              pg_temp.kit_project_epoch(g, %(seed)s, %(n_projects)s) AS e
            FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g OFFSET 0) AS r OFFSET 0) AS s
