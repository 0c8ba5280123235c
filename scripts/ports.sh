# shellcheck shell=bash
# Ports for servers that test and bench scripts start. Source it.
#
#   listened_port LOG PID [TIMEOUT_S]
#       The port a backend started with port 0 reports in LOG: the local runner's
#       "edge-chat listening on http://127.0.0.1:PORT", `wrangler dev`'s
#       "Ready on http://127.0.0.1:PORT". Fails if PID exits or nothing comes in time.
#   unused_port
#       For servers that cannot bind port 0 themselves (the bench's peers): a port below
#       the kernel's ephemeral range, free when checked.
#
# Why not bind port 0, read the port and release it: that port comes from the ephemeral
# range, which every outgoing socket of the suite also draws from, so another socket can
# take it before the server binds it (wrangler then exits with "Address already in use").

listened_port() {
  local log=$1 pid=$2 deadline=$((SECONDS + ${3:-60})) port
  while [ "$SECONDS" -lt "$deadline" ]; do
    port=$(grep -oE '(edge-chat listening on|Ready on) http://127\.0\.0\.1:[0-9]+' "$log" 2>/dev/null |
      head -n 1 | grep -oE '[0-9]+$' || true)
    if [ -n "$port" ]; then
      echo "$port"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

unused_port() {
  python3 - <<'PY'
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
# Below the ephemeral range, above the privileged ports and the usual service ports.
candidates = list(range(max(10000, low - 16384), low))
random.shuffle(candidates)
for port in candidates[:200]:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
else:
    raise SystemExit("no free port below the ephemeral range")
PY
}
