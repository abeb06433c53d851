#!/usr/bin/env bash
# Install the PostgreSQL server (Debian/Ubuntu package `postgresql`) unless it is already here.
# Used by CI before the scale-out tests; `python -m scripts.postgres_server` finds the programs
# on PATH or under /usr/lib/postgresql/<version>/bin. No-op when initdb and pg_ctl exist.
set -euo pipefail

have_server() {
    command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && return 0
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

if have_server; then
    echo "PostgreSQL server already installed"
    exit 0
fi
bash "$(dirname "$0")/apt_install.sh" "the PostgreSQL server (initdb, pg_ctl)" postgresql
have_server || { echo "error: postgresql installed but initdb not found" >&2; exit 1; }
echo "PostgreSQL server installed"
