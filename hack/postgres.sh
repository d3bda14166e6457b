#!/usr/bin/env bash
# Runs a throwaway PostgreSQL for the inventory store's tests.
#
#   hack/postgres.sh start   install (Debian packages) if missing, init, start;
#                            print the DSN on stdout (progress goes to stderr)
#   hack/postgres.sh stop    stop it
#   hack/postgres.sh dsn     print the DSN of the running cluster
#
# so that `export SMAREGI_TEST_POSTGRES_URL=$(hack/postgres.sh start)` works.
# Idempotent: a running cluster is left alone and its DSN printed again.
#
# The cluster lives outside the checkout, in the cache directory of the user
# that runs the server: initdb refuses to run as root, so as root the server
# runs as the `postgres` user and its data is under that user's home
# (root's home is not readable by it). Override with SMAREGI_PG_DIR.
# It listens on 127.0.0.1 only, with trust authentication: it is for tests.
# Port: SMAREGI_PG_PORT (default 55432), or the next free one.
set -euo pipefail

log() { echo ">> $*" >&2; }
die() { echo "hack/postgres.sh: $*" >&2; exit 1; }

cmd="${1:-start}"

# --- who runs the server -------------------------------------------------
if [[ $(id -u) -eq 0 ]]; then
  run_user=postgres
else
  run_user="$(id -un)"
fi

as_user() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u "$run_user" -- "$@"
  else
    "$@"
  fi
}

# --- find (or install) the server binaries -------------------------------
find_bindir() {
  # Debian's versioned directory first: /usr/local/bin/postgres may exist on
  # some machines but not on a fresh one, and the versioned directory has
  # every tool together.
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
    echo "$d"
    return
  fi
  if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
    dirname "$(command -v pg_ctl)"
  fi
}

bindir="$(find_bindir)"
if [[ -z "$bindir" ]]; then
  [[ "$cmd" == start ]] || die "PostgreSQL is not installed"
  [[ $(id -u) -eq 0 ]] || die "PostgreSQL is not installed; run as root (or: apt-get install -y postgresql)"
  log "installing PostgreSQL from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # The package's own cluster (port 5432) is not used; we run our own.
  apt-get install -y -qq postgresql >&2
  bindir="$(find_bindir)"
  [[ -n "$bindir" ]] || die "PostgreSQL installed but initdb/pg_ctl not found"
fi

if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
  log "creating the postgres system user"
  useradd --system --home-dir /var/lib/postgresql --create-home --shell /bin/bash postgres
fi

# --- where -----------------------------------------------------------------
if [[ -n "${SMAREGI_PG_DIR:-}" ]]; then
  dir="$SMAREGI_PG_DIR"
elif [[ $(id -u) -eq 0 ]]; then
  home="$(getent passwd postgres | cut -d: -f6)"
  dir="${home:-/var/lib/postgresql}/.cache/smaregi-operator/pg"
else
  dir="${XDG_CACHE_HOME:-$HOME/.cache}/smaregi-operator/pg"
fi
data="$dir/data"
portfile="$dir/port"

running() { [[ -f "$data/PG_VERSION" ]] && as_user "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; }

dsn() { echo "postgres://postgres@127.0.0.1:$(cat "$portfile")/postgres?sslmode=disable"; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

case "$cmd" in
  stop)
    if running; then
      log "stopping PostgreSQL in $data"
      as_user "$bindir/pg_ctl" -D "$data" -m fast -w stop >&2
    else
      log "PostgreSQL in $data is not running"
    fi
    exit 0
    ;;
  dsn)
    running || die "not running (hack/postgres.sh start)"
    dsn
    exit 0
    ;;
  start) ;;
  *) die "usage: $0 start|stop|dsn" ;;
esac

if running; then
  log "PostgreSQL already running in $data"
  dsn
  exit 0
fi

mkdir -p "$dir"
[[ $(id -u) -eq 0 ]] && chown "$run_user" "$dir"

if [[ ! -f "$data/PG_VERSION" ]]; then
  log "initialising a cluster in $data ($("$bindir/postgres" --version))"
  as_user "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; die "initdb failed"; }
fi

port="${SMAREGI_PG_PORT:-55432}"
while port_in_use "$port"; do
  log "port $port is taken, trying $((port + 1))"
  port=$((port + 1))
  (( port < ${SMAREGI_PG_PORT:-55432} + 100 )) || die "no free port found"
done
echo "$port" >"$portfile"

log "starting PostgreSQL on 127.0.0.1:$port"
# The socket goes into the cluster directory: /var/run/postgresql may not
# exist or be writable. fsync stays on so that durability is real.
as_user "$bindir/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c max_connections=200" \
  start >&2 || { tail -n 30 "$dir/server.log" >&2; die "PostgreSQL did not start"; }

dsn
