#!/usr/bin/env bash
# test_write_errors.sh - fault injection on the files Spex writes: a full disk (/dev/full: every
# write fails with ENOSPC) and a short write (RLIMIT_FSIZE of 2 KiB with SIGXFSZ ignored: the write
# that crosses the limit is cut short, the next fails with EFBIG), on the golden tiny model with the
# tiny tokenizer:
#   - spex batch --output / --errors on /dev/full: exit 1, the message names the file (the output
#     used to be read back for resuming first: /dev/full reads as endless zeros, and batch grew to
#     13 GB of RSS before anything was written);
#   - spex batch under the 2 KiB limit: exit 1 naming the output; the rerun without the limit drops
#     the cut last line and ends with every id exactly once;
#   - spex generate --stats and --ep-stats on /dev/full: exit 1 naming the file.
# Usage: test_write_errors.sh SPEX_BINARY TESTS_DATA_DIR
set -u
spex=$1
data=$(cd "$2" && pwd)
tmp=$(mktemp -d /tmp/spex-write-errors-XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

m=$tmp/tiny
mkdir -p "$m"
for f in config.json model.safetensors; do ln -s "$data/golden/tiny-f32/$f" "$m/$f"; done
for f in tokenizer.json tokenizer_config.json; do ln -s "$data/tiny-tokenizer/$f" "$m/$f"; done
for i in 1 2 3 4 5 6 7 8; do echo "{\"id\": $i, \"prompt\": \"hello world $i\", \"max_tokens\": 24, \"temperature\": 0}"; done >"$tmp/in.jsonl"
echo 'not json' >>"$tmp/in.jsonl"

# expect_write_error NAME FILE CMD...: exit 1 within 120 s, stderr names FILE
expect_write_error() {
    local name=$1 file=$2
    shift 2
    timeout 120 "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
    local rc=$?
    [ $rc -eq 1 ] || fail "$name: exit $rc, want 1 ($(tail -2 "$tmp/$name.err"))"
    grep -q "cannot write.*'$file'" "$tmp/$name.err" || fail "$name: the error does not name '$file': $(tail -2 "$tmp/$name.err")"
}

expect_write_error batch-out /dev/full "$spex" batch --model "$m" --input "$tmp/in.jsonl" --output /dev/full \
    --errors "$tmp/e1.jsonl"
expect_write_error batch-errors /dev/full "$spex" batch --model "$m" --input "$tmp/in.jsonl" --output "$tmp/o2.jsonl" \
    --errors /dev/full
expect_write_error stats /dev/full "$spex" generate --model "$m" --prompt hello -n 4 --stats /dev/full
expect_write_error ep-stats /dev/full "$spex" generate --model "$m" --prompt hello -n 4 --loopback-ranks 1 \
    --ep-stats /dev/full

# a short write: 2 KiB of output allowed (results are ~300 bytes each), SIGXFSZ ignored so write() fails instead
(trap '' XFSZ; ulimit -f 2; exec "$spex" batch --model "$m" --input "$tmp/in.jsonl" --output "$tmp/lim.jsonl" \
    --errors "$tmp/lim.err.jsonl") >/dev/null 2>"$tmp/lim.err"
rc=$?
[ $rc -eq 1 ] || fail "size limit: exit $rc, want 1 ($(tail -2 "$tmp/lim.err"))"
grep -q "cannot write '$tmp/lim.jsonl': File too large" "$tmp/lim.err" || fail "size limit: $(tail -2 "$tmp/lim.err")"
[ "$(stat -c %s "$tmp/lim.jsonl")" -eq 2048 ] || fail "size limit: output is $(stat -c %s "$tmp/lim.jsonl") bytes, want the 2048 allowed"
"$spex" batch --model "$m" --input "$tmp/in.jsonl" --output "$tmp/lim.jsonl" --errors "$tmp/lim.err.jsonl" \
    >/dev/null 2>"$tmp/lim2.err" || fail "size limit: the rerun failed: $(tail -2 "$tmp/lim2.err")"
grep -q "dropping a truncated last line" "$tmp/lim2.err" || fail "size limit: the cut line was not dropped"
/usr/bin/python3 - "$tmp/lim.jsonl" <<'PY' || fail "size limit: the resumed output is not every id once"
import json, sys
ids = sorted(json.loads(l)["id"] for l in open(sys.argv[1]))
assert ids == list(range(1, 9)), ids
PY

if [ "$fails" -gt 0 ]; then echo "$fails failure(s)"; exit 1; fi
echo "write errors: all checks passed"
