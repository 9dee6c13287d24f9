# serve_lib.sh - what the serve tests (test_serve*.sh) share: their scratch directory and failure
# count, the model directories they serve and starting a server in the background. Sourced, not run
# (ctest only picks up test_*.sh). The test defines $spex and $data, then either calls serve_test_init
# or defines $tmp, pids=(), fail() and serve_run itself (how `spex ARGS...` is launched in the background
# subshell: `exec "$spex"` so that the pid is the server's, or under mpirun); serve_tries (x 50 ms)
# bounds each wait, 200 by default.

# serve_test_init NAME: $tmp (/tmp/spex-NAME-*, removed at exit with every server in pids killed),
# fails=0 and fail() (counts and prints a failure), and serve_run as `exec "$spex"` (so ${NAME}_pid is
# the server itself, for signal tests).
serve_test_init() {
    tmp=$(mktemp -d "/tmp/spex-$1-XXXXXX")
    pids=()
    trap serve_cleanup EXIT
    fails=0
    fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
    serve_run() { exec "$spex" "$@"; }
}
serve_cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$tmp"
}

# serve_models: $tmp/tiny, the golden tiny-f32 weights with the 320-token tokenizer (fast: a whole
# 256-token context in ~30 ms), and $tmp/slow, a random checkpoint with a 4096-token context and the same
# tokenizer, for requests that must stay running for a while.
serve_models() {
    mkdir -p "$tmp/tiny"
    for f in config.json model.safetensors; do ln -s "$data/golden/tiny-f32/$f" "$tmp/tiny/$f"; done
    for f in tokenizer.json tokenizer_config.json; do ln -s "$data/tiny-tokenizer/$f" "$tmp/tiny/$f"; done
    "$spex" synth --out "$tmp/slow" --preset tiny --vocab 320 --max-pos 4096 >/dev/null || fail "synth"
    for f in tokenizer.json tokenizer_config.json; do ln -s "$data/tiny-tokenizer/$f" "$tmp/slow/$f"; done
}

# serve_start NAME ARGS...: `serve_run serve ARGS...` in the background on a free port, waits for its
# port file and /health; sets ${NAME}_pid (the launched process) and ${NAME}_url.
serve_start() {
    local name=$1 tries=${serve_tries:-200}
    shift
    rm -f "$tmp/$name.port"
    serve_run serve --port 0 --port-file "$tmp/$name.port" "$@" 2>"$tmp/$name.log" &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 1 "$tries"); do
        [ -s "$tmp/$name.port" ] && break
        sleep 0.05
    done
    local url="http://127.0.0.1:$(cat "$tmp/$name.port" 2>/dev/null)"
    for _ in $(seq 1 "$tries"); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/health")" = 200 ] && break
        sleep 0.05
    done
    eval "${name}_pid=$pid; ${name}_url=$url"
}
