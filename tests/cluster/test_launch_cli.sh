#!/usr/bin/env bash
# test_launch_cli.sh - the launch scripts' command lines, without running a
# cluster (no root needed): spex-mpirun turns hostfile + worker count into the
# right mpirun command (rank 0 alone first, --map-by, oversubscription and
# mpi_yield_when_idle, interface selection, spex arguments passed through
# verbatim) and SIGTERM to it stops a 3-rank `spex serve` gracefully; the sbatch scripts (scaling.sbatch too: its --dry-run srun steps) parse and carry the Slurm settings they
# document; bad usage fails with exit 2 and a message.
# Usage: test_launch_cli.sh SPEX_BINARY TESTS_DATA_DIR
set -uo pipefail
# shellcheck source=tests/cluster/lib.sh
. "$(dirname "$0")/lib.sh"
spex=$(readlink -f "$1")
data=$(cd "$2" && pwd)
work=$(mktemp -d /tmp/spex-launch-cli-XXXXXX)
trap 'rm -rf "$work"' EXIT
sm=$src/launch/spex-mpirun
printf '# three nodes\nnode1 slots=1\nnode2 slots=2\n\nnode3 slots=2 max_slots=4\n' >"$work/hosts"

# shellcheck disable=SC2069  # stderr (the printed command) to the pipe, stdout discarded
dry() { "$sm" --dry-run --spex "$spex" "$@" 2>&1 >/dev/null; }
out=$(dry -H "$work/hosts" -- logits --model /m --tokens 1,2) || fail "dry run exit $?"
echo "$out"
grep -q "^+ mpirun -np 5 --map-by node " <<<"$out" || fail "default workers = slots - 1 = 4 (5 ranks), --map-by node"
grep -q -- "--hostfile $work/hosts" <<<"$out" || fail "hostfile not passed"
grep -q -- "--oversubscribe\|mpi_yield_when_idle" <<<"$out" && fail "5 ranks on 5 slots is not oversubscribed"
grep -q "$spex logits --model /m --tokens 1,2\$" <<<"$out" || fail "spex command not passed through"

out=$(dry -H "$work/hosts" --workers 6 --iface 10.0.0.0/24 -x FOO -- generate --prompt 'It is a truth' -n 5)
echo "$out"
grep -q "^+ mpirun -np 7 " <<<"$out" || fail "--workers 6 -> 7 ranks"
grep -q -- "--oversubscribe" <<<"$out" || fail "7 ranks on 5 slots must oversubscribe"
grep -q -- "--mca mpi_yield_when_idle 1" <<<"$out" || fail "oversubscribed ranks must yield when idle"
grep -q -- "--mca btl_tcp_if_include 10.0.0.0/24 --mca oob_tcp_if_include 10.0.0.0/24" <<<"$out" || fail "--iface"
grep -q -- "-x FOO" <<<"$out" || fail "-x FOO"
grep -q -- "--prompt It\\\\ is\\\\ a\\\\ truth -n 5\$" <<<"$out" || fail "an argument with spaces must be printed quoted"
out=$(dry -H "$work/hosts" --workers 2 --map-by slot --tcp-only --no-yield --mca btl_tcp_links 2 -- logits)
grep -q -- "-np 3 --map-by slot" <<<"$out" || fail "--map-by slot"
grep -q -- "--mca btl tcp,self" <<<"$out" || fail "--tcp-only"
grep -q -- "--mca btl_tcp_links 2" <<<"$out" || fail "--mca passthrough"
# the real command runs what it printed: a 1-worker job of /bin/echo prints the arguments twice
out=$("$sm" --spex /bin/echo --workers 1 --mca btl self,vader -- a 'b c' 2>/dev/null) || fail "running mpirun exit $?"
[ "$(echo "$out" | grep -c '^a b c$')" = 2 ] || fail "mpirun did not run 2 ranks of the command: $out"

# SIGTERM to spex-mpirun stops the job gracefully: rank 0 of a 3-rank spex serve drains and exits 0
if true; then
    mkdir -p "$work/m"
    ln -s "$data/golden/tiny-f32/config.json" "$data/golden/tiny-f32/model.safetensors" \
          "$data/tiny-tokenizer/tokenizer.json" "$data/tiny-tokenizer/tokenizer_config.json" "$work/m/"
    OMPI_MCA_mpi_yield_when_idle=1 "$sm" --spex "$spex" --workers 2 -- serve --model "$work/m" --port 0 \
        --port-file "$work/port" >"$work/serve.log" 2>&1 &
    pid=$!
    if wait_for 60 test -s "$work/port" && wait_for 30 curl -sf -m 5 "localhost:$(cat "$work/port")/health" -o /dev/null; then
        kill -TERM $pid
        rc=0
        timeout 60 tail --pid=$pid -f /dev/null || { fail "spex-mpirun still running 60 s after SIGTERM"; kill -KILL $pid; }
        wait $pid || rc=$?
        [ $rc -eq 0 ] || fail "spex-mpirun exit $rc after SIGTERM, want 0 (graceful)"
        grep -q "serve: stopped" "$work/serve.log" || fail "rank 0 did not stop gracefully: $(cat "$work/serve.log")"
    else
        fail "3-rank spex serve under spex-mpirun did not come up: $(cat "$work/serve.log")"
        kill -KILL $pid
    fi
fi

expect_usage() {  # expect_usage PATTERN CMD...: exit 2 and PATTERN on stderr
    local pat=$1 rc
    shift
    "$@" >/dev/null 2>"$work/err"
    rc=$?
    [ $rc -eq 2 ] || fail "$*: exit $rc, want 2"
    grep -qi -- "$pat" "$work/err" || fail "$*: stderr lacks '$pat': $(cat "$work/err")"
}
expect_usage "cannot read hostfile" "$sm" --spex "$spex" -H "$work/none" -- logits
expect_usage "positive integer" "$sm" --spex "$spex" --workers 0 -- logits
expect_usage "unknown option" "$sm" --spex "$spex" --bogus -- logits
expect_usage "usage" "$sm"
expect_usage "usage" "$src/launch/netns-cluster" frobnicate
expect_usage "usage" "$src/launch/slurm/local-cluster"

for f in serve batch; do
    s=$src/launch/slurm/$f.sbatch
    bash -n "$s" || fail "$f.sbatch: syntax"
    grep -q "srun \${SPEX_SRUN_ARGS:---mpi=pmix}" "$s" || fail "$f.sbatch: not launched with srun --mpi=pmix"
    grep -q "^#SBATCH --ntasks=" "$s" || fail "$f.sbatch: no #SBATCH --ntasks"
    # without SPEX_MODEL the script refuses to start, naming the knob
    env -u SPEX_MODEL SLURM_JOB_ID=1 SLURM_NTASKS=1 SLURM_JOB_NODELIST=x bash "$s" >/dev/null 2>"$work/err" \
        && fail "$f.sbatch ran without SPEX_MODEL"
    grep -q SPEX_MODEL "$work/err" || fail "$f.sbatch: no message about SPEX_MODEL"
done
# scaling.sbatch: the sweep inside an allocation, one srun step per point (printed by --dry-run)
s=$src/launch/slurm/scaling.sbatch
bash -n "$s" || fail "scaling.sbatch: syntax"
for l in "--ntasks=" "--requeue" "--open-mode=append"; do
    grep -q "^#SBATCH $l" "$s" || fail "scaling.sbatch lacks #SBATCH $l"
done
env -u SPEX_MODEL SLURM_JOB_ID=1 bash "$s" >/dev/null 2>"$work/err" && fail "scaling.sbatch ran without SPEX_MODEL"
grep -q SPEX_MODEL "$work/err" || fail "scaling.sbatch: no message about SPEX_MODEL"
SPEX_MODEL=$data/golden/tiny-f32 SPEX_BIN=$spex SPEX_SRC=$src SLURM_JOB_ID=7 SPEX_SCALE_OUT=$work/scale.csv \
    SPEX_SCALE_ARGS="--workers 1,2 --batch 4 --spec-k 0 --codec fp8 --dry-run" bash "$s" >"$work/out" 2>&1 \
    || fail "scaling.sbatch --dry-run: $(cat "$work/out")"
grep -q "srun --mpi=pmix -n 3 $spex bench scale --model $data/golden/tiny-f32 --batch 4 --spec-k 0 --codec fp8" "$work/out" \
    || fail "scaling.sbatch: no srun step for 2 workers: $(cat "$work/out")"
[ ! -e "$work/scale.csv" ] || fail "scaling.sbatch --dry-run wrote a CSV"

b=$src/launch/slurm/batch.sbatch
for l in "--requeue" "--signal=B:USR1@" "--open-mode=append"; do
    grep -q "^#SBATCH $l" "$b" || fail "batch.sbatch lacks #SBATCH $l"
done
finish
