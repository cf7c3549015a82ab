#!/usr/bin/env bash
# Install (when missing) and start the real servers the tests use: PostgreSQL and Redis,
# on loopback, with data under ${MIXOPT_SERVICES_DIR:-/tmp/mixopt-services}. Also installs
# Chromium (Debian's package) for the dashboard's browser tests.
# Prints the environment to use: MIXOPT_TEST_DATABASE_URL and MIXOPT_TEST_REDIS_URL.
set -euo pipefail

DIR=${MIXOPT_SERVICES_DIR:-/tmp/mixopt-services}
PG_PORT=${MIXOPT_PG_PORT:-55432}
REDIS_PORT=${MIXOPT_REDIS_PORT:-56379}
mkdir -p "$DIR"

need=()
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ -x /usr/bin/chromium ] || need+=(chromium)  # headless browser for tests/dashboard (driven by Playwright)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${need[@]}" >&2
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi

# PostgreSQL refuses to run as root: run it as the 'postgres' user (created by the package).
id postgres >/dev/null 2>&1 || useradd --system --home "$DIR" postgres
PGDATA="$DIR/pg"
if ! "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -q 2>/dev/null; then
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    rm -rf "$PGDATA"; mkdir -p "$PGDATA"; chown postgres "$PGDATA" "$DIR"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  chown -R postgres "$PGDATA"
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$DIR/pg.log" -w \
    -o "-p $PG_PORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null
fi
for db in mixopt_test mixopt_bench; do
  runuser -u postgres -- "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1 ||
    runuser -u postgres -- "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "$db"
done

if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --logfile "$DIR/redis.log" >/dev/null
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

echo "export MIXOPT_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/mixopt_test"
echo "export MIXOPT_BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/mixopt_bench"
echo "export MIXOPT_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
