#!/usr/bin/env bash
# test_slurm.sh - launch/slurm/*.sbatch against a real Slurm: starts munged,
# slurmctld and slurmd by hand (launch/slurm/local-cluster, private directory
# and ports), then
#   serve.sbatch: the port file appears, /health and /v1/completions answer on
#     the URL it names, scancel stops the server gracefully;
#   batch.sbatch: a prompts file runs in the preemptible "low" partition, a job
#     in "high" preempts it mid-run, the job checkpoints (USR1), requeues
#     itself, resumes, and ends COMPLETED with every prompt answered exactly once,
#     and the answers equal those of an uninterrupted run;
# and stops the daemons it started. The jobs run 3 tasks: the coordinator and
# 2 expert workers.
# Usage: test_slurm.sh SPEX_BINARY TESTS_DATA_DIR
set -uo pipefail
. "$(dirname "$0")/lib.sh"
spex=$(readlink -f "$1")
data=$(cd "$2" && pwd)
need_root
need_tools munged mungekey slurmctld slurmd sbatch squeue scontrol scancel srun curl
work=$(mktemp -d /tmp/spex-slurm-test-XXXXXX)
chmod 755 "$work"   # munged needs its socket path traversable by all
export SPEX_SLURM_DIR=$work/slurm SPEX_SLURM_PORT=$((17000 + ($$ % 500) * 2))
cleanup() {
    "$src/launch/slurm/local-cluster" down || true
    [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
eval "$("$src/launch/slurm/local-cluster" env)"
spex_has_mpi "$spex" || die "$spex is not built with MPI (expert parallelism)"
ntasks=3   # coordinator + 2 expert workers

# a model slow enough to be preempted mid-run (~370 tok/s here), with the 320-token test tokenizer
"$spex" synth --out "$work/model" --preset small --vocab 320 --max-pos 256 >/dev/null || die "spex synth"
cp "$data/tiny-tokenizer/tokenizer.json" "$data/tiny-tokenizer/tokenizer_config.json" "$work/model/"
export SPEX_MODEL=$work/model SPEX_BIN=$spex

note "local Slurm up"
timeout 60 "$src/launch/slurm/local-cluster" up || die "local-cluster up"
cd "$work" || exit 1

# ---------------------------------------------------------------- serve.sbatch
note "serve.sbatch ($ntasks task(s), partition high)"
sj=$(sbatch --parsable --partition=high --ntasks=$ntasks --output="$work/serve-%j.out" \
     --export=ALL,SPEX_PORT_FILE="$work/serve.port" "$src/launch/slurm/serve.sbatch") || die "sbatch serve"
if wait_for 90 test -s "$work/serve.url"; then
    [ "$(cat "$work/serve.url")" = "http://$(hostname -s):$(cat "$work/serve.port")" ] \
        || fail "url file '$(cat "$work/serve.url")' does not match the node and port file"
    url=http://127.0.0.1:$(cat "$work/serve.port")   # this machine's name may not resolve (CI)
    curl -sf -m 10 "$url/health" | grep -q ok || fail "/health"
    curl -sf -m 60 "$url/v1/completions" -H 'Content-Type: application/json' \
        -d '{"prompt": "It is a truth", "max_tokens": 5, "temperature": 0}' >"$work/completion.json" \
        || fail "POST /v1/completions"
    /usr/bin/python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["usage"]["completion_tokens"] == 5 and r["choices"][0]["finish_reason"] == "length", r
' "$work/completion.json" || fail "completion content: $(cat "$work/completion.json")"
    if [ "$ntasks" -gt 1 ]; then   # the experts ran on the worker tasks
        curl -sf -m 10 "$url/metrics" >"$work/metrics" || fail "/metrics"
        grep -q '^spex_expert_seconds_total{rank="2"} [0-9.e-]*[1-9]' "$work/metrics" \
            || fail "no expert time on worker rank 2: $(grep spex_expert_seconds "$work/metrics")"
    fi
else
    fail "serve.sbatch wrote no URL file within 90 s"
fi
scancel "$sj"
wait_for 60 sh -c "! squeue -h -j $sj 2>/dev/null | grep -q ." || fail "serve job $sj still queued 60 s after scancel"
grep -q "serve: stopped" "$work/serve-$sj.out" || fail "server did not stop gracefully: $(cat "$work/serve-$sj.out")"
[ -e "$work/serve.url" ] && fail "URL file left behind after the job ended"

# ---------------------------------------------------------------- batch.sbatch + preemption
n=120
for i in $(seq 1 $n); do
    echo "{\"id\": \"q$i\", \"prompt\": \"Prompt number $i: it is\", \"max_tokens\": 48, \"temperature\": 0}"
done >"$work/prompts.jsonl"
note "batch.sbatch: $n prompts ($ntasks task(s), partition low)"
bj=$(sbatch --parsable --ntasks=$ntasks --output="$work/batch-%j.out" \
     --export=ALL,SPEX_INPUT="$work/prompts.jsonl",SPEX_OUTPUT="$work/results.jsonl",SPEX_BATCH_ARGS="--max-running 4 --ep-stats $work/ep.json" \
     "$src/launch/slurm/batch.sbatch") || die "sbatch batch"
lines() { if [ -f "$work/results.jsonl" ]; then wc -l <"$work/results.jsonl"; else echo 0; fi; }
have_results() { [ "$(lines)" -ge "$1" ]; }
wait_for 90 have_results 5 || fail "batch job wrote no results within 90 s"
before=$(lines)
note "preempting with a job in partition high ($before/$n results so far)"
hj=$(sbatch --parsable --partition=high --ntasks=4 --output="$work/high-%j.out" --wrap 'echo high start; sleep 2; echo high end') \
    || die "sbatch high"
wait_for 60 sh -c "! squeue -h -j $hj 2>/dev/null | grep -q ." || fail "high-priority job did not run within 60 s"
grep -q "high end" "$work/high-$hj.out" || fail "high-priority job output: $(cat "$work/high-$hj.out")"
at_preempt=$(lines)
# the requeued job may start only after cred_expire; let it go now
scontrol update JobId="$bj" StartTime=now 2>/dev/null || true
wait_for 120 sh -c "! squeue -h -j $bj 2>/dev/null | grep -q ." || fail "batch job $bj did not finish within 120 s after preemption"
note "batch job done"
scontrol show job "$bj" >"$work/job.txt" 2>&1
grep -q "JobState=COMPLETED" "$work/job.txt" || fail "batch job not COMPLETED: $(grep -o 'JobState=[A-Z_]*' "$work/job.txt")"
grep -q "Restarts=[1-9]" "$work/job.txt" || fail "batch job was not requeued (Restarts=0)"
bo=$work/batch-$bj.out
grep -q "USR1" "$bo" || fail "batch job got no USR1 at preemption"
grep -q "requeueing job $bj" "$bo" || fail "batch job did not requeue itself"
grep -q "restart 1, [1-9][0-9]* result line" "$bo" || fail "requeued run did not start from the results so far"
grep -q "skipped as already done" "$bo" || fail "spex batch did not resume"
[ "$at_preempt" -lt "$n" ] || fail "the batch finished before it was preempted ($at_preempt/$n): preemption not tested"
echo "results: $before when preempted, $at_preempt after the preempted run; restarts: $(grep -o 'Restarts=[0-9]*' "$work/job.txt")"
sed -n '/USR1/,$p' "$bo" | grep -v '^spex batch: [0-9]' | head -20

if [ "$ntasks" -gt 1 ]; then
    /usr/bin/python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); assert s["world"] == 3 and all(r["pairs"] > 0 for r in s["ranks"]), s' \
        "$work/ep.json" || fail "the resumed batch run did not use 2 expert worker ranks"
fi

# every prompt exactly once, and the same answers as an uninterrupted run (greedy)
sed -n '1,4p;117,120p' "$work/prompts.jsonl" >"$work/ref-prompts.jsonl"
timeout 120 "$spex" batch --model "$work/model" --input "$work/ref-prompts.jsonl" --output "$work/ref.jsonl" \
    --max-running 4 2>/dev/null || fail "reference spex batch"
/usr/bin/python3 - "$work/prompts.jsonl" "$work/results.jsonl" "$work/ref.jsonl" <<'PY' || fail "batch results"
import json, sys
want = [json.loads(l)["id"] for l in open(sys.argv[1])]
got = [json.loads(l) for l in open(sys.argv[2])]
ids = [r["id"] for r in got]
dup = sorted({i for i in ids if ids.count(i) > 1})
lost = sorted(set(want) - set(ids))
assert not dup and not lost and len(ids) == len(want), f"duplicated {dup}, lost {lost}"
assert all(len(r["tokens"]) == 48 and r["finish_reason"] == "length" for r in got)
by = {r["id"]: r["tokens"] for r in got}
for r in map(json.loads, open(sys.argv[3])):
    assert by[r["id"]] == r["tokens"], f"{r['id']}: resumed run differs from an uninterrupted one"
print(f"{len(ids)} results, none lost or duplicated; 8 match an uninterrupted run")
PY

note "stopping the daemons"
"$src/launch/slurm/local-cluster" down
for pf in "$SPEX_SLURM_DIR/run/slurmd.pid" "$SPEX_SLURM_DIR/run/slurmctld.pid" "$SPEX_SLURM_DIR/munge/run/munged.pid"; do
    [ -e "$pf" ] && fail "$pf still there after down"
done
pgrep -f "$SPEX_SLURM_DIR" >/dev/null && fail "processes of this cluster still running: $(pgrep -af "$SPEX_SLURM_DIR")"
finish
