/* kit */
-- Helper functions for the generation statements, created in pg_temp: they vanish with the
-- session, leave the platform's schema exactly as the seed defines it, and the planner inlines
-- them (plain SQL expressions, the seed hash folded to a constant) as long as their arguments are
-- plain columns, which is why every statement computes derived ids in an inner level first.
-- Times stay epoch seconds until the end: to_timestamp(number) does not depend on TimeZone.
CREATE OR REPLACE FUNCTION pg_temp.kit_u(g bigint, seed bigint, salt integer) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ((hashint8extended(g, hashint8extended(salt, seed)) >> 11) & 9007199254740991)::float8
           / 9007199254740992.0 $$;
-- an id in 1..n; skew > 1 piles rows on a few ids, scattered over the id range (P is prime)
CREATE OR REPLACE FUNCTION pg_temp.kit_pick(g bigint, seed bigint, salt integer, n bigint, skew float8)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 1 + mod(floor(n * (pg_temp.kit_u(g, seed, salt) ^ skew))::bigint * 2147483647, n) $$;
-- row g of n, created in id order over 2023-01-01 .. 2024-12-31 UTC (epoch seconds)
CREATE OR REPLACE FUNCTION pg_temp.kit_epoch(g bigint, n bigint, seed bigint, salt integer)
RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 1672531200 + 63072000 * (g - 1 + pg_temp.kit_u(g, seed, salt)) / n $$;
-- a moment between epoch e and the end of the two years
CREATE OR REPLACE FUNCTION pg_temp.kit_after(e float8, u float8) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT e * (1 - u) + 1735603200 * u $$;
-- formulas a parent table and its children share
CREATE OR REPLACE FUNCTION pg_temp.kit_project_epoch(p bigint, seed bigint, n_projects bigint)
RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pg_temp.kit_epoch(p, n_projects, seed, 13) $$;
CREATE OR REPLACE FUNCTION pg_temp.kit_project_owner(p bigint, seed bigint, n_users bigint)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pg_temp.kit_pick(p, seed, 11, n_users, 2.0) $$;
-- every project p has data sources 2p-1 and 2p; the rest belong to random projects
CREATE OR REPLACE FUNCTION pg_temp.kit_ds_project(d bigint, seed bigint, n_projects bigint)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN d <= 2 * n_projects THEN (d + 1) / 2
                ELSE pg_temp.kit_pick(d, seed, 21, n_projects, 1.0) END $$;
CREATE OR REPLACE FUNCTION pg_temp.kit_job_project(j bigint, seed bigint, n_projects bigint)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pg_temp.kit_pick(j, seed, 31, n_projects, 1.5) $$;
-- job j of project p (= kit_job_project(j)) was created after its project
CREATE OR REPLACE FUNCTION pg_temp.kit_job_epoch(j bigint, p bigint, seed bigint, n_projects bigint)
RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pg_temp.kit_after(pg_temp.kit_project_epoch(p, seed, n_projects), pg_temp.kit_u(j, seed, 32)) $$;
