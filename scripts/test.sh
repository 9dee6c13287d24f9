#!/usr/bin/env bash
# The whole test suite, as CI runs it: install dependencies, build Release and
# ASan/UBSan trees, run every test in the Release tree and the unit tests under
# the sanitizers. Usage: scripts/test.sh [ctest args...]  (e.g. -L unit, -R golden)
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
