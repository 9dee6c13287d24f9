#!/usr/bin/env bash
# run_fuzz_test.sh - one fuzz ctest: replay a harness's corpus (the seeds and the regression input of every
# crash found so far), then fuzz for SECONDS more with its dictionary, new inputs going to a scratch
# directory (the corpus in the repo is never written). Fails on any crash, leak, timeout or OOM.
# Usage: run_fuzz_test.sh HARNESS CORPUS_DIR DICT SECONDS
set -euo pipefail
harness=$1 corpus=$2 dict=$3 seconds=$4
scratch=$(mktemp -d /tmp/spex-fuzz-test-XXXXXX)
art=${SPEX_FUZZ_ARTIFACTS:-$PWD}   # crash-*, leak-*, ... are kept here
trap 'rm -rf "$scratch"' EXIT
# -timeout=120: one input taking 2 minutes is a hang (inputs take micro- to milliseconds); a tighter bound
# only catches a loaded or suspended machine. ASan's leak checker runs at exit of each libFuzzer process (-detect_leaks=1 is libFuzzer's default)
set +e
"$harness" -max_total_time="$seconds" -dict="$dict" -timeout=120 -rss_limit_mb=2048 -close_fd_mask=2 \
    -artifact_prefix="$art/" -print_final_stats=1 "$scratch" "$corpus" 2>&1 | tail -n 25
status=${PIPESTATUS[0]}
set -e
if ls "$art"/crash-* "$art"/leak-* "$art"/timeout-* "$art"/oom-* >/dev/null 2>&1; then
    echo "artifacts: $(ls "$art"/crash-* "$art"/leak-* "$art"/timeout-* "$art"/oom-* 2>/dev/null)"
fi
exit "$status"
