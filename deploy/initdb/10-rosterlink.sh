#!/bin/bash
# The rosterlink warehouse database beside Airflow's (run once by the postgres image on an empty volume).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE rosterlink LOGIN PASSWORD '${ROSTERLINK_DB_PASSWORD}';
CREATE DATABASE rosterlink OWNER rosterlink;
SQL
