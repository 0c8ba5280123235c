#!/usr/bin/env bash
# Headless-browser end-to-end test of the client in static/.
#
#   tests/browser/run.sh            # starts the local runner (in memory) on a free port
#   tests/browser/run.sh wrangler   # starts `wrangler dev` on a free port (Worker built first,
#                                   # toolchain from scripts/cloudflare-toolchain.sh)
#   EDGE_CHAT_URL=http://127.0.0.1:8787 tests/browser/run.sh   # uses a running backend
#   EDGE_CHAT_SCREENSHOT=docs/screenshot.png tests/browser/run.sh   # also writes the
#                                   # README's screenshot of two tabs chatting
#
# The backend it starts keeps a backlog of 5 (EDGE_CHAT_BACKLOG tells the test), so that
# "load older messages" has something to load under the default rate limit, and a roster
# page of 3 (EDGE_CHAT_ROSTER_INLINE_MAX), so that a room of a few has a paged roster. It has signed
# identity on, with a fresh random secret in a file of its own (the local runner reads it
# with --auth-secret-file, `wrangler dev` as the secret AUTH_SECRET from an --env-file);
# EDGE_CHAT_AUTH_SECRET_FILE tells the test where, so that it can sign join tokens.
#
# Installs what it needs: Debian's chromium (if /usr/bin/chromium is missing) and
# playwright-core from tests/browser/package-lock.json. No browser is ever downloaded.
set -euo pipefail

cd "$(dirname "$0")/../.."
HERE=tests/browser
HEALTH_TIMEOUT_S=${HEALTH_TIMEOUT_S:-60}
BACKEND=${1:-local}
case "$BACKEND" in
  local|wrangler) ;;
  *) echo "usage: $0 [local|wrangler]" >&2; exit 2 ;;
esac

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if [ ! -x /usr/bin/chromium ]; then
  echo "run.sh: installing Debian chromium" >&2
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi

# npm ci records the installed tree in node_modules/.package-lock.json.
if [ ! -f "$HERE/node_modules/.package-lock.json" ] ||
   [ "$HERE/package-lock.json" -nt "$HERE/node_modules/.package-lock.json" ]; then
  npm ci --prefix "$HERE" --no-audit --no-fund
fi

runner_pid=""
runner_log=""
persist_dir=""
secret_dir=""
cleanup() {
  if [ -n "$runner_pid" ]; then
    # The backend runs in its own process group (setsid): wrangler starts workerd.
    kill -- "-$runner_pid" 2>/dev/null || true
    wait "$runner_pid" 2>/dev/null || true
  fi
  if [ -n "$runner_log" ]; then rm -f "$runner_log"; fi
  if [ -n "$persist_dir" ]; then rm -rf "$persist_dir"; fi
  if [ -n "$secret_dir" ]; then rm -rf "$secret_dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${EDGE_CHAT_URL:-}" ]; then
  export EDGE_CHAT_BACKLOG=5
  # A small roster page, so that a room of a few members has a paged roster.
  export EDGE_CHAT_ROSTER_INLINE_MAX=3
  runner_log=$(mktemp)
  secret_dir=$(mktemp -d)
  export EDGE_CHAT_AUTH_SECRET_FILE="$secret_dir/auth-secret"
  # 32 random bytes as 64 hex digits; never printed.
  (umask 077 && node -e "process.stdout.write(require('crypto').randomBytes(32).toString('hex'))" >"$EDGE_CHAT_AUTH_SECRET_FILE")
  (umask 077 && printf 'AUTH_SECRET=%s\n' "$(cat "$EDGE_CHAT_AUTH_SECRET_FILE")" >"$secret_dir/dev.vars")
  if [ "$BACKEND" = local ]; then
    # Build first, so that compile time does not count against the health-check poll.
    cargo build -q -p local-runner
    target_dir=$(cargo metadata --format-version 1 --no-deps | node -e "let d='';process.stdin.on('data',c=>d+=c).on('end',()=>console.log(JSON.parse(d).target_directory))")
    setsid "$target_dir/debug/local-runner" --port 0 --in-memory \
      --backlog "$EDGE_CHAT_BACKLOG" --roster-inline-max "$EDGE_CHAT_ROSTER_INLINE_MAX" \
      --auth-secret-file "$EDGE_CHAT_AUTH_SECRET_FILE" >"$runner_log" 2>&1 &
  else
    [ -f build/index.js ] || bash scripts/build-worker.sh
    persist_dir=$(mktemp -d)
    # No build step (scripts/wrangler-dev-config says why), ports of its own choosing.
    scripts/wrangler-dev-config "$persist_dir/wrangler.toml"
    CLOUDFLARE_CF_FETCH_ENABLED=false WRANGLER_SEND_METRICS=false CI=true \
      setsid node_modules/.bin/wrangler dev --config "$persist_dir/wrangler.toml" \
      --ip 127.0.0.1 --port 0 --inspector-port 0 --persist-to "$persist_dir" \
      --env-file "$secret_dir/dev.vars" \
      --var "BACKLOG:$EDGE_CHAT_BACKLOG" --var "ROSTER_INLINE_MAX:$EDGE_CHAT_ROSTER_INLINE_MAX" \
      >"$runner_log" 2>&1 &
  fi
  runner_pid=$!
  # shellcheck source=scripts/ports.sh
  . scripts/ports.sh
  if ! port=$(listened_port "$runner_log" "$runner_pid" "$HEALTH_TIMEOUT_S"); then
    echo "run.sh: the $BACKEND backend reported no port:" >&2
    cat "$runner_log" >&2
    exit 1
  fi
  export EDGE_CHAT_URL="http://127.0.0.1:$port"

  healthy=""
  deadline=$((SECONDS + HEALTH_TIMEOUT_S))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if node -e "fetch(process.argv[1],{signal:AbortSignal.timeout(2000)}).then(r=>process.exit(r.status===200?0:1),()=>process.exit(1))" \
        "$EDGE_CHAT_URL/healthz"; then
      healthy=1
      break
    fi
    if ! kill -0 "$runner_pid" 2>/dev/null; then
      echo "run.sh: the $BACKEND backend exited early:" >&2
      cat "$runner_log" >&2
      exit 1
    fi
    sleep 0.25
  done
  if [ -z "$healthy" ]; then
    echo "run.sh: no 200 from $EDGE_CHAT_URL/healthz within ${HEALTH_TIMEOUT_S}s; runner output:" >&2
    cat "$runner_log" >&2
    exit 1
  fi
fi

echo "run.sh: testing against $EDGE_CHAT_URL" >&2
status=0
node --test "$HERE"/*.test.mjs || status=$?
if [ "$status" -ne 0 ] && [ -n "$runner_log" ]; then
  echo "run.sh: $BACKEND backend output:" >&2
  cat "$runner_log" >&2
fi
exit "$status"
