#!/usr/bin/env bash
# test_serve_openai_sdk.sh - `spex serve` driven by the official `openai` npm client
# (tests/node/openai_client.test.mjs, the version pinned in tests/node/package-lock.json, installed
# by scripts/setup.sh into tests/node/node_modules): every request field works as OpenAI documents
# it or gets a 400 naming it. Exits 77 (ctest SKIP) only when node or npm is missing.
# Usage: test_serve_openai_sdk.sh SPEX_BINARY TEST_DATA_DIR
set -uo pipefail
spex=$1
data=$2
here=$(cd "$(dirname "$0")" && pwd)
node_dir="$here/../node"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "SKIP: node and npm are needed for the openai npm client tests (Debian: apt-get install nodejs npm)"
    exit 77
fi
if [ ! -d "$node_dir/node_modules/openai" ]; then
    echo "tests/node/node_modules is missing: installing the pinned openai client (npm ci)"
    (cd "$node_dir" && npm ci --no-audit --no-fund) || { echo "FAIL: npm ci in tests/node (run scripts/setup.sh)"; exit 1; }
fi
source "$here/serve_lib.sh"
serve_test_init openai-sdk
serve_models
# spec-k 2 (the tiny model has an MTP module): every field also goes through speculative decoding
serve_start s --model "$tmp/tiny" --model-name tiny --spec-k 2
[ -n "${s_url:-}" ] && curl -sf "$s_url/health" >/dev/null || { echo "FAIL: server did not start: $(cat "$tmp/s.log")"; exit 1; }
node "$node_dir/openai_client.test.mjs" "$s_url" tiny || fail "openai client suite (server log: $tmp/s.log)"
[ "$fails" -eq 0 ] || { tail -20 "$tmp/s.log"; exit 1; }
echo "PASS"
