# shellcheck shell=bash
# The toolchain of the Cloudflare backend, installed idempotently on a fresh machine and
# exported into the current shell. Source it (it sets variables for you):
#
#   . scripts/cloudflare-toolchain.sh
#
# or run it (`bash scripts/cloudflare-toolchain.sh`) to install and print the exports.
# Every step is skipped when already done, so sourcing it again costs about a second.
#
#   - rustup target wasm32-unknown-unknown
#   - worker-build 0.8.7 and wasm-bindgen-cli 0.2.130 in ~/.cargo/bin (slow to build,
#     about 6 and 3 minutes on 2 cores, so kept once installed at the right version)
#   - npm ci (wrangler, binaryen's wasm-opt) when node_modules is missing or older than
#     package-lock.json
#
# Exports WASM_BINDGEN_BIN and WASM_OPT_BIN (worker-build would otherwise download both
# from GitHub), CLOUDFLARE_CF_FETCH_ENABLED=false and WRANGLER_SEND_METRICS=false (no
# internet calls from wrangler/Miniflare), and puts ~/.cargo/bin and node_modules/.bin on
# PATH. It never exits the calling shell: failures return non-zero.

_edge_chat_toolchain() {
    local root worker_build_version=0.8.7 wasm_bindgen_version=0.2.130
    root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)" || return 1
    local cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
    local say="echo cloudflare-toolchain:"

    case ":$PATH:" in *":$cargo_bin:"*) ;; *) PATH="$cargo_bin:$PATH" ;; esac

    if ! command -v cargo >/dev/null || ! command -v rustup >/dev/null; then
        $say "cargo and rustup are required (https://rustup.rs)" >&2
        return 1
    fi
    if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
        $say "adding the wasm32-unknown-unknown target"
        rustup target add wasm32-unknown-unknown || return 1
    fi

    # `--version` prints "worker-build 0.8.7" / "wasm-bindgen 0.2.130".
    if [ "$("$cargo_bin/worker-build" --version 2>/dev/null | awk '{print $NF}')" != "$worker_build_version" ]; then
        $say "installing worker-build $worker_build_version (takes minutes)"
        cargo install worker-build --version "$worker_build_version" --force || return 1
    fi
    if [ "$("$cargo_bin/wasm-bindgen" --version 2>/dev/null | awk '{print $NF}')" != "$wasm_bindgen_version" ]; then
        # Not --locked: the CLI's own lock file wants a crate version missing from the
        # registry mirror. It must equal the wasm-bindgen pinned in worker/Cargo.toml.
        $say "installing wasm-bindgen-cli $wasm_bindgen_version (takes minutes)"
        cargo install wasm-bindgen-cli --version "$wasm_bindgen_version" --force || return 1
    fi

    # wrangler 4.86.0 (package.json) needs Node >= 20.3; it is the newest wrangler that
    # still runs on Node 20, so no second Node is needed.
    local node_version
    node_version="$(node --version 2>/dev/null)" || {
        $say "Node.js >= 20.3 and npm are required" >&2
        return 1
    }
    if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=3)?0:1)'; then
        $say "Node.js >= 20.3 is required, found $node_version" >&2
        return 1
    fi
    # npm writes node_modules/.package-lock.json on every install: older than
    # package-lock.json (or missing) means node_modules is stale.
    if [ ! -x "$root/node_modules/.bin/wrangler" ] || [ ! -x "$root/node_modules/.bin/wasm-opt" ] ||
        [ ! -f "$root/node_modules/.package-lock.json" ] ||
        [ "$root/package-lock.json" -nt "$root/node_modules/.package-lock.json" ]; then
        $say "npm ci"
        (cd "$root" && CI=true npm ci --no-audit --no-fund) || return 1
    fi

    export WASM_BINDGEN_BIN="$cargo_bin/wasm-bindgen"
    export WASM_OPT_BIN="$root/node_modules/.bin/wasm-opt"
    export CLOUDFLARE_CF_FETCH_ENABLED=false
    export WRANGLER_SEND_METRICS=false
    case ":$PATH:" in *":$root/node_modules/.bin:"*) ;; *) PATH="$root/node_modules/.bin:$PATH" ;; esac
    export PATH

    $say "ready (worker-build $worker_build_version, wasm-bindgen $wasm_bindgen_version, node $node_version, wrangler $("$root/node_modules/.bin/wrangler" --version 2>/dev/null | tail -n 1))"
    echo "export WASM_BINDGEN_BIN=$WASM_BINDGEN_BIN"
    echo "export WASM_OPT_BIN=$WASM_OPT_BIN"
    echo "export CLOUDFLARE_CF_FETCH_ENABLED=false WRANGLER_SEND_METRICS=false"
    echo "export PATH=$root/node_modules/.bin:$cargo_bin:\$PATH"
}

_edge_chat_toolchain
_edge_chat_toolchain_status=$?
unset -f _edge_chat_toolchain
# `return` when sourced, `exit` when run.
return "$_edge_chat_toolchain_status" 2>/dev/null || exit "$_edge_chat_toolchain_status"
