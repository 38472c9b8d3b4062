#!/bin/sh
# First start of docker-compose's PostgreSQL (docker-entrypoint-initdb.d): the
# group roles of schema waitroom (sql/05_roles.sql, mounted before this) and
# the service's login role, a member of waitroom_app and waitroom_worker only.
# The superuser (POSTGRES_USER) owns the schema and runs the migrations.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v service_password="$WAITROOM_SERVICE_PASSWORD" <<'SQL'
create role waitroom_service login password :'service_password' in role waitroom_app, waitroom_worker;
SQL
