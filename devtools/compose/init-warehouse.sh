#!/bin/bash
# Runs once, when the postgres container initialises an empty data directory
# (mounted into /docker-entrypoint-initdb.d/). Creates the mailtrace warehouse database, owned by its
# own login role, beside the Airflow metadata database. The `mailtrace` schema inside it is created
# by the pipeline's migrations (plugins/mailtrace/warehouse.py), not here.
#
# WAREHOUSE_DB, WAREHOUSE_USER and WAREHOUSE_PASSWORD come from the postgres service's environment.
# Changing them later has no effect on an existing volume: alter the role by hand, or
# `docker compose down -v` to start over.
set -euo pipefail

psql -v ON_ERROR_STOP=1 \
    --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v wh_db="${WAREHOUSE_DB:-warehouse}" \
    -v wh_user="${WAREHOUSE_USER:-mailtrace}" \
    -v wh_password="${WAREHOUSE_PASSWORD:?WAREHOUSE_PASSWORD must be set}" <<'SQL'
CREATE ROLE :"wh_user" LOGIN PASSWORD :'wh_password';
CREATE DATABASE :"wh_db" OWNER :"wh_user";
REVOKE ALL ON DATABASE :"wh_db" FROM PUBLIC;
SQL

