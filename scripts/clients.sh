#!/usr/bin/env bash
# Makes sure the client toolchains that tests/pg_clients.rs and tests/flight_clients.rs drive
# are installed:
#   - psql (PostgreSQL's client; scripts/services.sh installs it too);
#   - a Python venv at .venv with psycopg 3 and psycopg2, SQLAlchemy 2, asyncpg, ADBC's Flight
#     SQL and PostgreSQL drivers, connectorx, pyodbc, pyarrow, pandas and Polars
#     (tests/clients/python/requirements.txt, from PyPI; reinstalled when that file changes);
#   - psqlODBC and unixODBC (Debian's odbc-postgresql, unixodbc), with apt-get when missing;
#   - node-postgres in tests/clients/node/node_modules (npm ci from the committed package-lock.json);
#   - a JDK (javac, java) and pgjdbc at /usr/share/java/postgresql.jar (Debian's
#     libpostgresql-jdbc-java), with apt-get when missing;
#   - for the console's browser test (tests/console.rs): Debian's chromium and, in
#     tests/console/node_modules, playwright-core and pg (npm ci from the committed
#     package-lock.json; playwright drives the system browser and downloads none).
# Sourced by scripts/test.sh (`ensure_clients`), or run on its own: `bash scripts/clients.sh`.
# Idempotent, and quick (no network) when everything is already there.

CLIENTS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLIENTS_VENV=$CLIENTS_ROOT/.venv
CLIENTS_PY_REQ=$CLIENTS_ROOT/tests/clients/python/requirements.txt
CLIENTS_NODE_DIR=$CLIENTS_ROOT/tests/clients/node
CLIENTS_CONSOLE_DIR=$CLIENTS_ROOT/tests/console
CLIENTS_JDBC_JAR=/usr/share/java/postgresql.jar
CLIENTS_APT_UPDATED=0

clients_log() { printf '==> clients: %s\n' "$*" >&2; }
clients_die() { printf 'error: clients: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, else through password-less sudo.
clients_as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    clients_die "need root (or password-less sudo) to run: $*"
  fi
}

# apt-get install of the given Debian packages (one `apt-get update` per run first).
clients_apt_install() {
  command -v apt-get >/dev/null 2>&1 || clients_die "missing $* and no apt-get to install them"
  if [[ $CLIENTS_APT_UPDATED -eq 0 ]]; then
    clients_log "apt-get update"
    clients_as_root apt-get update -qq
    CLIENTS_APT_UPDATED=1
  fi
  clients_log "apt-get install $*"
  clients_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# psql for the psql tests.
ensure_psql_client() {
  if command -v psql >/dev/null 2>&1; then
    clients_log "psql present ($(psql --version))"
  else
    clients_apt_install postgresql-client
  fi
}

# .venv with the pinned Python clients (psycopg 3, ADBC's Flight SQL driver, pyarrow, pandas,
# Polars). .venv/.requirements.sha256 records the requirements.txt last installed: the venv is
# (re)installed whenever that file changes, and left alone (no network) while it does not.
ensure_python_client() {
  local want have stamp=$CLIENTS_VENV/.requirements.sha256
  want=$(sha256sum "$CLIENTS_PY_REQ" | cut -d' ' -f1)
  have=$(cat "$stamp" 2>/dev/null || true)
  if [[ $have == "$want" ]] && "$CLIENTS_VENV/bin/python" -c 'import psycopg, psycopg2, sqlalchemy, asyncpg, adbc_driver_flightsql.dbapi, adbc_driver_postgresql.dbapi, connectorx, pyodbc, pyarrow' >/dev/null 2>&1; then
    clients_log "Python clients present in .venv (requirements.txt sha256 ${want:0:12})"
    return 0
  fi
  command -v python3 >/dev/null 2>&1 || clients_apt_install python3 python3-venv
  if [[ -e $CLIENTS_VENV ]] && ! "$CLIENTS_VENV/bin/python" -c 'pass' >/dev/null 2>&1; then
    clients_log "removing the broken venv .venv"
    rm -rf "$CLIENTS_VENV"
  fi
  if [[ ! -x $CLIENTS_VENV/bin/python ]]; then
    clients_log "creating the Python venv .venv"
    if ! python3 -m venv "$CLIENTS_VENV" 2>/dev/null; then
      rm -rf "$CLIENTS_VENV"
      clients_apt_install python3-venv
      python3 -m venv "$CLIENTS_VENV"
    fi
  fi
  clients_log "pip install -r tests/clients/python/requirements.txt into .venv"
  rm -f "$stamp"
  "$CLIENTS_VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$CLIENTS_PY_REQ"
  printf '%s\n' "$want" >"$stamp"
}

# node_modules with the pg version locked in package-lock.json.
ensure_node_client() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    clients_apt_install nodejs npm
  fi
  local want have
  want=$(node -e 'const l=require(process.argv[1]); console.log(l.packages["node_modules/pg"].version)' \
    "$CLIENTS_NODE_DIR/package-lock.json")
  have=$(node -e 'console.log(require(process.argv[1]).version)' \
    "$CLIENTS_NODE_DIR/node_modules/pg/package.json" 2>/dev/null || true)
  if [[ -n $have && $have == "$want" ]]; then
    clients_log "node-postgres (pg $have) present in tests/clients/node/node_modules"
    return 0
  fi
  clients_log "npm ci in tests/clients/node (pg $want)"
  (cd "$CLIENTS_NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
}

# Debian's chromium and the console test's node_modules (playwright-core, pg), reinstalled
# when package-lock.json changes.
ensure_console_client() {
  command -v chromium >/dev/null 2>&1 || clients_apt_install chromium
  local stamp=$CLIENTS_CONSOLE_DIR/node_modules/.lock.sha256 want
  want=$(sha256sum "$CLIENTS_CONSOLE_DIR/package-lock.json" | cut -d' ' -f1)
  if [[ $(cat "$stamp" 2>/dev/null || true) == "$want" ]]; then
    clients_log "chromium and playwright-core present (tests/console/node_modules)"
    return 0
  fi
  clients_log "npm ci in tests/console (playwright-core, pg)"
  (cd "$CLIENTS_CONSOLE_DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  printf '%s\n' "$want" >"$stamp"
}

# javac, java and Debian's pgjdbc jar.
ensure_java_client() {
  local need=()
  command -v javac >/dev/null 2>&1 || need+=(default-jdk-headless)
  command -v java >/dev/null 2>&1 || need+=(default-jdk-headless)
  [[ -f $CLIENTS_JDBC_JAR ]] || need+=(libpostgresql-jdbc-java)
  if [[ ${#need[@]} -gt 0 ]]; then
    # shellcheck disable=SC2046
    clients_apt_install $(printf '%s\n' "${need[@]}" | sort -u)
  fi
  clients_log "JDK present ($(javac -version 2>&1)), pgjdbc at $CLIENTS_JDBC_JAR"
}

# psqlODBC's Unicode driver registered with unixODBC (pyodbc loads libodbc.so.2).
ensure_odbc_client() {
  if command -v odbcinst >/dev/null 2>&1 && odbcinst -q -d -n "PostgreSQL Unicode" >/dev/null 2>&1; then
    clients_log "psqlODBC present ($(odbcinst -q -d -n 'PostgreSQL Unicode' | grep -m1 '^Driver='))"
    return 0
  fi
  clients_apt_install odbc-postgresql unixodbc
}

# Everything tests/pg_clients.rs and tests/client_matrix.rs need.
# openssl makes the throwaway certificate of the TLS test.
ensure_openssl() {
  command -v openssl >/dev/null 2>&1 && return 0
  clients_apt_install openssl
}

ensure_clients() {
  ensure_openssl
  ensure_psql_client
  ensure_python_client
  ensure_node_client
  ensure_java_client
  ensure_odbc_client
  ensure_console_client
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  ensure_clients
fi
