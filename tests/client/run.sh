#!/usr/bin/env bash
# Tests of the client module static/edge-chat.js, with Node's test runner:
# - tests/client/edge-chat.test.mjs: its logic, against a fake WebSocket (no server);
# - tests/client/backends.test.mjs: the module over the `ws` package against a real
#   backend, through a proxy that cuts its connection mid-send.
#
#   tests/client/run.sh            # starts the local runner (in memory) on a free port
#   tests/client/run.sh wrangler   # starts `wrangler dev` (Worker built first)
#   EDGE_CHAT_URL=http://127.0.0.1:8787 tests/client/run.sh   # a running backend, which
#                                  # must have the rate limit out of the way (see below)
#
# Installs `ws` from tests/client/package-lock.json. The backend it starts has the rate
# limit raised: the tests send bursts (and resend them) from one address, and the limit
# has scenarios of its own; and roster_inline_max 2, so that a small room's roster is
# paged.
set -euo pipefail

cd "$(dirname "$0")/../.."
HERE=tests/client
HEALTH_TIMEOUT_S=${HEALTH_TIMEOUT_S:-60}
BACKEND=${1:-local}
case "$BACKEND" in
  local|wrangler) ;;
  *) echo "usage: $0 [local|wrangler]" >&2; exit 2 ;;
esac
RATE=(rate_burst 100000 rate_per_sec 100000)
# A tiny roster page, so that a room of a few members has a paged roster.
ROSTER=(roster_inline_max 2)

# npm ci records the installed tree in node_modules/.package-lock.json.
if [ ! -f "$HERE/node_modules/.package-lock.json" ] ||
   [ "$HERE/package-lock.json" -nt "$HERE/node_modules/.package-lock.json" ]; then
  npm ci --prefix "$HERE" --no-audit --no-fund
fi

runner_pid=""
runner_log=""
persist_dir=""
cleanup() {
  if [ -n "$runner_pid" ]; then
    # The backend runs in its own process group (setsid): wrangler starts workerd.
    kill -- "-$runner_pid" 2>/dev/null || true
    wait "$runner_pid" 2>/dev/null || true
  fi
  if [ -n "$runner_log" ]; then rm -f "$runner_log"; fi
  if [ -n "$persist_dir" ]; then rm -rf "$persist_dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${EDGE_CHAT_URL:-}" ]; then
  runner_log=$(mktemp)
  if [ "$BACKEND" = local ]; then
    cargo build -q -p local-runner
    target_dir=$(cargo metadata --format-version 1 --no-deps | node -e "let d='';process.stdin.on('data',c=>d+=c).on('end',()=>console.log(JSON.parse(d).target_directory))")
    setsid "$target_dir/debug/local-runner" --port 0 --in-memory \
      "--${RATE[0]//_/-}" "${RATE[1]}" "--${RATE[2]//_/-}" "${RATE[3]}" \
      "--${ROSTER[0]//_/-}" "${ROSTER[1]}" >"$runner_log" 2>&1 &
  else
    [ -f build/index.js ] || bash scripts/build-worker.sh
    persist_dir=$(mktemp -d)
    # No build step (scripts/wrangler-dev-config says why), ports of its own choosing.
    scripts/wrangler-dev-config "$persist_dir/wrangler.toml"
    CLOUDFLARE_CF_FETCH_ENABLED=false WRANGLER_SEND_METRICS=false CI=true \
      setsid node_modules/.bin/wrangler dev --config "$persist_dir/wrangler.toml" \
      --ip 127.0.0.1 --port 0 --inspector-port 0 --persist-to "$persist_dir" \
      --var "${RATE[0]^^}:${RATE[1]}" --var "${RATE[2]^^}:${RATE[3]}" \
      --var "${ROSTER[0]^^}:${ROSTER[1]}" >"$runner_log" 2>&1 &
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

echo "run.sh: testing the client module against $EDGE_CHAT_URL" >&2
status=0
node --test "$HERE"/*.test.mjs || status=$?
if [ "$status" -ne 0 ] && [ -n "$runner_log" ]; then
  echo "run.sh: $BACKEND backend output:" >&2
  cat "$runner_log" >&2
fi
exit "$status"
