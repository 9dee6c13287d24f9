#!/usr/bin/env bash
# The whole test suite, as CI runs it: install dependencies, build Release and
# ASan/UBSan trees, run every test in the Release tree and the unit tests under
# the sanitizers; when clang and libFuzzer are there, build the fuzz harnesses
# (tests/fuzz/, only their libraries and themselves) and run each for 10 s after
# replaying its corpus (ctest -L fuzz, about 2 minutes in all).
# Usage: scripts/test.sh [ctest args...]  (e.g. -L unit, -R golden)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bash scripts/setup.sh
jobs=$(nproc)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPEX_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$jobs"

echo "== Release build: all tests"
(cd build && ctest --output-on-failure "$@")
echo "== ASan/UBSan build: unit tests"
# detect_leaks stays on: every *_create has its *_free, and the tests check it.
# tests/lsan.supp names the one leak that is not ours (inside the Criterion runner).
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
   LSAN_OPTIONS="suppressions=$root/tests/lsan.supp" \
   ctest --output-on-failure -L unit "$@")

if command -v clang >/dev/null && echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { return 0; }' |
        clang -x c -fsanitize=fuzzer -o /dev/null - 2>/dev/null; then
    echo "== fuzz harnesses: corpus replay + 10 s each"
    CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPEX_FUZZ=ON -DSPEX_TESTS=OFF \
        -DSPEX_BENCH=OFF >/dev/null
    cmake --build build-fuzz -j "$jobs" --target fuzz_all
    (cd build-fuzz && ctest --output-on-failure -L fuzz)
else
    echo "== fuzz harnesses: skipped (no clang with libFuzzer; scripts/setup.sh installs them)"
fi
