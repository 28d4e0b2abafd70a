/* kit */
-- Records come in pairs (2k-1, 2k). In 70 percent of pairs both sides are the same transaction seen by
-- the project's two main data sources (2p-1 and 2p): same external id, amount, currency and
-- date, so the reconciliation services find real matches. Other records stand alone, in any
-- data source. Values are keyed on src (k for a pair, -g alone) so both sides agree.
INSERT INTO reconciliation_records (id, project_id, data_source_id, source_system,
                                              external_id, amount, currency, transaction_date,
                                              status, created_at) OVERRIDING SYSTEM VALUE
SELECT g, pg_temp.kit_ds_project(ds, %(seed)s, %(n_projects)s), ds,
       CASE WHEN u_sys < 0.85
            THEN (ARRAY['netsuite','sap','quickbooks','stripe','adyen','paypal','bank_feed','xero',
                        'oracle_gl','workday'])[1 + floor(u_sys / 0.085)::int]
            ELSE 'legacy_' || lpad((1 + floor((u_sys - 0.85) / 0.15 * 200))::int::text, 3, '0') END,
       'EXT-' || CASE WHEN paired THEN k::text ELSE k || '-' || g END,
       round((5 + 99995 * u_amount ^ 4)::numeric, 2),
       CASE WHEN u_cur < 0.6 THEN 'USD' WHEN u_cur < 0.8 THEN 'EUR' WHEN u_cur < 0.9 THEN 'GBP'
            WHEN u_cur < 0.95 THEN 'CAD' ELSE 'AUD' END,
       date '2023-01-01' + day,
       CASE WHEN paired THEN CASE WHEN u_status < 0.9 THEN 'matched' ELSE 'pending' END
            WHEN u_status < 0.7 THEN 'unmatched' WHEN u_status < 0.9 THEN 'pending' ELSE 'exception' END,
       to_timestamp(1672531200 + 86400 * (day + 1 + 4 * u_lag))
FROM (SELECT g, k, paired, ds, pg_temp.kit_u(ds, %(seed)s, 42) AS u_sys,  -- one system per source
        pg_temp.kit_u(src, %(seed)s, 43) AS u_amount, pg_temp.kit_u(src, %(seed)s, 44) AS u_cur,
        floor(730 * pg_temp.kit_u(src, %(seed)s, 45))::int AS day,
        pg_temp.kit_u(g, %(seed)s, 46) AS u_lag, pg_temp.kit_u(g, %(seed)s, 47) AS u_status
      FROM (SELECT g, k, paired, CASE WHEN paired THEN k ELSE -g END AS src,
              CASE WHEN paired THEN 2 * pg_temp.kit_pick(k, %(seed)s, 41, %(n_projects)s, 1.5) - mod(g, 2)
                   ELSE pg_temp.kit_pick(g, %(seed)s, 48, %(n_data_sources)s, 1.5) END AS ds
            FROM (SELECT g, (g + 1) / 2 AS k, pg_temp.kit_u((g + 1) / 2, %(seed)s, 49) < 0.7 AS paired
                  FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g OFFSET 0) AS r
            OFFSET 0) AS s OFFSET 0) AS t
