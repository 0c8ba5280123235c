#!/bin/sh
# Builds the Worker bundle (build/index.js + wasm) with worker-build, in the `worker`
# profile of Cargo.toml (optimised for size, names stripped).
# wrangler runs this as its [build] command, on `wrangler dev` and `wrangler deploy`.
#
#   EDGE_CHAT_SKIP_BUILD=1  reuse the existing build/ (a harness that built once);
#                           fails if there is none.
#   WASM_BINDGEN_BIN, WASM_OPT_BIN
#                           the tools worker-build would otherwise try to download from
#                           GitHub; default to ~/.cargo/bin/wasm-bindgen and the npm
#                           binaryen in node_modules (scripts/cloudflare-toolchain.sh
#                           installs both).
set -eu
cd "$(dirname "$0")/.."

if [ "${EDGE_CHAT_SKIP_BUILD:-0}" = 1 ]; then
    if [ -f build/index.js ]; then
        echo "build-worker: EDGE_CHAT_SKIP_BUILD=1, reusing build/" >&2
        exit 0
    fi
    echo "build-worker: EDGE_CHAT_SKIP_BUILD=1 but build/index.js is missing; run sh scripts/build-worker.sh first" >&2
    exit 1
fi

: "${WASM_BINDGEN_BIN:=${CARGO_HOME:-$HOME/.cargo}/bin/wasm-bindgen}"
: "${WASM_OPT_BIN:=$PWD/node_modules/.bin/wasm-opt}"
export WASM_BINDGEN_BIN WASM_OPT_BIN
for tool in "$WASM_BINDGEN_BIN" "$WASM_OPT_BIN"; do
    if [ ! -x "$tool" ]; then
        echo "build-worker: $tool is missing; run . scripts/cloudflare-toolchain.sh" >&2
        exit 1
    fi
done
WORKER_BUILD="${WORKER_BUILD_BIN:-$(command -v worker-build || echo "${CARGO_HOME:-$HOME/.cargo}/bin/worker-build")}"

# worker-build writes build/ next to the crate it builds; the bundle lives at the repo
# root (wrangler.toml: main = "build/index.js").
cd worker
"$WORKER_BUILD" --profile worker --out-dir ../build
