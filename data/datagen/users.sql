/* kit */ INSERT INTO users (id, email, first_name, last_name, role, is_active, last_login,
                             created_at, updated_at) OVERRIDING SYSTEM VALUE
SELECT g, CASE WHEN u_case < 0.6 THEN lower(fn || '.' || ln) ELSE fn || '.' || ln END || g || '@' || dom,
       fn, ln,
       CASE WHEN u_role < 0.02 THEN 'admin' WHEN u_role < 0.17 THEN 'manager'
            WHEN u_role < 0.77 THEN 'analyst' ELSE 'viewer' END,
       u_active < 0.9,
       CASE WHEN u_login >= 0.05 THEN to_timestamp(pg_temp.kit_after(e, u_login)) END,
       to_timestamp(e), to_timestamp(pg_temp.kit_after(e, u_upd))
FROM (SELECT g,
        (ARRAY['Alice','Bob','Carol','David','Erin','Frank','Grace','Heidi','Ivan','Judy','Mallory',
               'Niaj','Olivia','Peggy','Rupert','Sybil','Trent','Uma','Victor','Wendy'])
            [1 + floor(20 * pg_temp.kit_u(g, %(seed)s, 1))::int] AS fn,
        (ARRAY['Smith','Jones','Garcia','Mueller','Rossi','Dubois','Kowalski','Nguyen','Tanaka','Silva',
               'Okafor','Larsen','Novak','Cohen','Patel','Kim','Ivanova','Murphy','Haddad','Berg'])
            [1 + floor(20 * pg_temp.kit_u(g, %(seed)s, 2))::int] AS ln,
        (ARRAY['example.com','Acme.io','GLOBEX.COM','initech.net','Umbrella.org'])
            [1 + floor(5 * pg_temp.kit_u(g, %(seed)s, 3))::int] AS dom,
        pg_temp.kit_u(g, %(seed)s, 4) AS u_case, pg_temp.kit_u(g, %(seed)s, 5) AS u_role,
        pg_temp.kit_u(g, %(seed)s, 6) AS u_active, pg_temp.kit_u(g, %(seed)s, 7) AS u_login,
        pg_temp.kit_u(g, %(seed)s, 8) AS u_upd, pg_temp.kit_epoch(g, %(n_users)s, %(seed)s, 9) AS e
      FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g OFFSET 0) AS r
