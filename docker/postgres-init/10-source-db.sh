#!/usr/bin/env bash
# Runs once, on the first start of the postgres service (docker-entrypoint-initdb.d):
# creates the "source" database the example DAGs export from, with the sample table the daily
# export DAG reads (public.demo_orders, the same shape `make demo` loads): 1,000,000 orders spread
# over the 60 days from 2024-01-01, so a backfill such as
#   airflow backfill create --dag-id s3stream_postgres_to_s3_daily --from-date 2024-01-01 --to-date 2024-01-07
# has data for every interval.
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE DATABASE source;
SQL

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname source <<'SQL'
CREATE TABLE public.demo_orders AS
SELECT g::int8 AS id,
       md5(g::text) AS customer,
       (g % 100000 * 1.37)::numeric(12, 2) AS amount,
       (ARRAY['new', 'paid', 'shipped', 'returned'])[1 + g % 4] AS status,
       timestamptz '2024-01-01 00:00:00+00' + (g - 1) * (interval '60 days' / 1000000) AS created_at,
       'note, "quoted" ' || md5((g * 7)::text) AS note
FROM generate_series(1, 1000000) AS g;
ALTER TABLE public.demo_orders ADD PRIMARY KEY (id);
CREATE INDEX demo_orders_created_at ON public.demo_orders (created_at);
ANALYZE public.demo_orders;
SQL
