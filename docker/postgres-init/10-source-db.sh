#!/usr/bin/env bash
# Runs once, on the first start of the postgres service (docker-entrypoint-initdb.d):
# creates the "source" database the example DAGs export from, with a sample table of
# 1,000,000 orders spread over the 60 days before 2026-01-01 (so a backfill has data).
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE DATABASE source;
SQL

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname source <<'SQL'
CREATE TABLE public.orders (
    id          bigint PRIMARY KEY,
    created_at  timestamptz NOT NULL,
    customer    text NOT NULL,
    amount      numeric(12, 2) NOT NULL,
    status      text NOT NULL,
    attributes  jsonb
);
INSERT INTO public.orders
SELECT g,
       timestamptz '2026-01-01 00:00:00+00' - (g % 5184000) * interval '1 second',
       'customer-' || (g % 997),
       round((g % 100000) / 100.0, 2),
       (ARRAY['new', 'paid', 'shipped', 'returned'])[1 + g % 4],
       jsonb_build_object('channel', CASE WHEN g % 3 = 0 THEN 'web' ELSE 'store' END)
FROM generate_series(1, 1000000) AS g;
CREATE INDEX orders_created_at ON public.orders (created_at);
ANALYZE public.orders;
SQL
