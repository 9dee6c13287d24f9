#!/usr/bin/env bash
# test_worker_options.sh - the worker ranks read their options (--model, --rank-timeout,
# --idle-timeout) with the same table as rank 0, and never fall back to a default silently:
#   - a bad --idle-timeout is a usage error of the job (exit 2, the option named, nothing on stdout);
#   - the --opt=value form works for the workers' options too (output equal to one process);
#   - a worker that reads a bad value where rank 0 did not (here rank 0 takes "--idle-timeout" as the
#     file name of --stats) refuses the hello with the reason, so the job fails naming the option.
# Usage: test_worker_options.sh SPEX_BINARY TESTS_DATA_DIR
set -u
spex=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
data=$(cd "$2" && pwd)
tmp=$(mktemp -d /tmp/spex-wopt-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
export OPENBLAS_NUM_THREADS=1
mpi() { local np=$1; shift; timeout 60 mpirun --oversubscribe --mca pml ob1 -np "$np" "$spex" "$@"; }
m=$data/golden/tiny-f32

mpi 3 logits --model "$m" --tokens 5,17 --idle-timeout soon >out.json 2>err.txt
rc=$?
[ $rc -eq 2 ] || fail "bad --idle-timeout: exit $rc, want 2"
grep -q -- "--idle-timeout" err.txt || fail "bad --idle-timeout not named: $(head -3 err.txt)"
[ -s out.json ] && fail "bad --idle-timeout: printed to stdout"

"$spex" logits --model "$m" --tokens 5,17 --no-ep >ref.json 2>/dev/null || fail "reference exit $?"
mpi 3 logits --model "$m" --tokens 5,17 --rank-timeout=5 --idle-timeout=30 >eq.json 2>err.txt || fail "=form exit $?: $(head -3 err.txt)"
cmp -s ref.json eq.json || fail "=form: output differs from one process"

mpi 2 logits --model "$m" --tokens 5,17 --stats --idle-timeout >out.json 2>err.txt
rc=$?
[ $rc -ne 0 ] || fail "a worker with a bad option: job exit 0"
grep -q -- "--idle-timeout needs a value" err.txt || fail "refusal reason missing: $(head -5 err.txt)"

if [ $fails -ne 0 ]; then echo "$fails check(s) failed"; exit 1; fi
echo "worker options: all checks passed"
