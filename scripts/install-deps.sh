#!/usr/bin/env bash
# Installs what the tests and the demo need and a fresh machine may lack:
# the PostgreSQL server binaries (initdb, pg_ctl, postgres, pg_dump, ...)
# and redis-server (the rate limiter's tests start their own).
# Go comes with the machine; Go modules come from the module proxy.
set -euo pipefail

have_pg() {
  command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && return 0
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

if ! have_pg; then
  echo "install-deps: PostgreSQL server binaries not found; installing postgresql-15 from Debian packages" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q postgresql-15
fi

if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; then
  echo "install-deps: redis-server not found; installing it from Debian packages" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q redis-server
fi
