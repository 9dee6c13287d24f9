#!/usr/bin/env bash
# A fuzzing campaign over the libFuzzer harnesses of tests/fuzz/: builds the clang tree build-fuzz
# (-DSPEX_FUZZ=ON: ASan + UBSan + libFuzzer) if needed, then runs each harness, one process at a time,
# for RUNS executions or SECONDS, whichever comes first, starting from its seed corpus (copied: new
# inputs go to build-fuzz/campaign/NAME/corpus, the repo's corpus is never written) with its
# dictionary. Prints a table: harness, executions, coverage (edges) and features, corpus size, crashes
# (crash-, leak-, timeout-, oom- artifacts, kept in build-fuzz/campaign/NAME/). Exit 1 if any crashed.
# Usage: scripts/fuzz.sh [-n RUNS] [-t SECONDS] [HARNESS...]   (default 1000000 runs, 1800 s, all)
#   e.g. scripts/fuzz.sh -n 100000 config wire
set -euo pipefail
cd "$(dirname "$0")/.."
runs=1000000 secs=1800
while getopts "n:t:" o; do
    case $o in n) runs=$OPTARG ;; t) secs=$OPTARG ;; *) sed -n 2,10p "$0"; exit 2 ;; esac
done
shift $((OPTIND - 1))
command -v clang >/dev/null || { echo "fuzz.sh: clang not found (scripts/setup.sh installs it)" >&2; exit 2; }
if [ ! -f build-fuzz/CMakeCache.txt ]; then
    CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPEX_FUZZ=ON -DSPEX_TESTS=OFF \
        -DSPEX_BENCH=OFF >/dev/null
fi
cmake --build build-fuzz -j "$(nproc)" --target fuzz_all >/dev/null
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for f in tests/fuzz/fuzz_*.c; do n=${f##*/fuzz_}; names+=("${n%.c}"); done
fi
dict_of() { grep -o "fuzz_$1 [a-z_]*\.dict" tests/fuzz/CMakeLists.txt | awk '{print $2}'; }
rows=() failed=0
for n in "${names[@]}"; do
    bin=build-fuzz/tests/fuzz/fuzz_$n camp=build-fuzz/campaign/$n
    [ -x "$bin" ] || { echo "fuzz.sh: no harness $bin" >&2; exit 2; }
    rm -rf "$camp" && mkdir -p "$camp/corpus"
    echo "== fuzz_$n: up to $runs executions or $secs s" >&2
    t0=$SECONDS
    set +e
    "$bin" -runs="$runs" -max_total_time="$secs" -dict="tests/fuzz/dict/$(dict_of "$n")" -timeout=120 \
        -rss_limit_mb=2048 -close_fd_mask=2 -print_final_stats=1 -artifact_prefix="$camp/" \
        "$camp/corpus" "tests/fuzz/corpus/$n" >"$camp/log" 2>&1
    rc=$?
    set -e
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$camp/log" | awk '{print $2}' | tail -1)
    last=$(grep -E '^#[0-9]+' "$camp/log" | grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*/[0-9]*[a-zA-Z]*' | tail -1)
    cov=$(awk '{print $2}' <<<"$last") ft=$(awk '{print $4}' <<<"$last") corp=$(awk '{print $6}' <<<"$last")
    crashes=$(find "$camp" -maxdepth 1 \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
    [ "$rc" -eq 0 ] && [ "$crashes" -eq 0 ] || failed=1
    rows+=("$(printf '| fuzz_%s | %s | %s / %s | %s | %s | %d s |' "$n" "${execs:-?}" "${cov:-?}" "${ft:-?}" \
        "${corp:-?}" "$crashes" $((SECONDS - t0)))")
    echo "${rows[-1]}" >&2
done
echo "| harness | executions | coverage (edges / features) | corpus (inputs/bytes) | crashes | time |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
exit $failed
