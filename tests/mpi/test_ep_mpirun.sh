#!/usr/bin/env bash
# test_ep_mpirun.sh - expert parallelism under real mpirun (2..5 ranks, oversubscribed):
#   - `spex logits` (prefill, decode, MTP) equals the single-process output bit for bit with
#     lossless codecs (raw, raw+zstd), for contiguous, round-robin, replicated and uneven placements,
#     a per-layer placement derived from measured load (`spex placement --from-stats`), and on the
#     F32 and FP8 checkpoints; lossy codecs (bf16, fp8) stay within their bounds;
#   - greedy `spex generate` gives the same tokens, also with MTP speculation (--spec-k 1..4, every
#     golden checkpoint, 2..5 ranks);
#   - micro-batch overlap (--overlap on|off) changes no bit: logits (prefill, decode, MTP) on 2..5 ranks and
#     greedy generation with speculation, either way equal to one process;
#   - --ep-stats writes per layer / rank / expert-load / overlap JSON (also --stats: logits, and generate's stats object);
#   - failures end the job non-zero within 10 s and name the rank: a stalled worker (our timeout),
#     a worker killed with SIGKILL (the launcher), a worker that exits, a worker on another
#     checkpoint, a worker whose expert weights differ under the same headers (content digests,
#     cached beside the coordinator's checkpoint), an unhosted expert in --placement;
#   - the workers read their options with rank 0's table and never fall back to a default: a bad
#     --idle-timeout is exit 2 naming it, the --opt=value form works, and a worker that reads a bad
#     value where rank 0 did not refuses the hello with the reason.
# Single-process references need no special settings: the kernels give the same bits for any thread
# count, batch or SIMD path (core/matmul.h), and the ranks do not change that.
# Usage: test_ep_mpirun.sh SPEX_BINARY TESTS_DATA_DIR
set -u
spex=$1
data=$(cd "$2" && pwd)
tmp=$(mktemp -d /tmp/spex-ep-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
# -k: mpirun itself has been seen (1 run in 12, under `--rank-timeout` failures) to keep waiting after
# every rank had exited (zombie children) and to ignore SIGTERM; that hang is the launcher's, not Spex's.
mpi() { local np=$1; shift; timeout -k 5 60 mpirun --oversubscribe --mca pml ob1 -np "$np" "$spex" "$@"; }
f32=$data/golden/tiny-f32
fp8=$data/golden/tiny-fp8
T=5,17,42,3,99,100,7,8,250,1,64,128

echo '{"placement": [1,2,3,1,2,3,1,2,3,1,2,3,1,2,3,1]}' >"$tmp/rr.json"
echo '{"placement": [[1,2,3],[1,2],3,[2,3],1,1,[1,3],2,2,3,[1,2,3],1,2,3,1,[2,3]]}' >"$tmp/replicas.json"
echo '{"placement": [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,2]}' >"$tmp/uneven.json"
echo '{"placement": [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}' >"$tmp/short.json"

# ---- lossless: bit-identical to one process
"$spex" logits --model "$f32" --tokens $T --mtp --no-ep >"$tmp/ref.json" 2>/dev/null || fail "reference exit $?"
"$spex" logits --model "$f32" --tokens $T --mtp >"$tmp/loop.json" 2>/dev/null || fail "loopback exit $?"
cmp -s "$tmp/ref.json" "$tmp/loop.json" || fail "loopback (world size 1) differs from --no-ep"
same() {  # same NAME NP ARGS...: mpirun output equals the reference
    local name=$1 np=$2
    shift 2
    mpi "$np" logits --model "$f32" --tokens $T --mtp "$@" >"$tmp/$name.json" 2>"$tmp/$name.err" \
        || { fail "$name: exit $? $(tail -3 "$tmp/$name.err")"; return; }
    cmp -s "$tmp/ref.json" "$tmp/$name.json" || fail "$name: logits differ from one process"
}
same np1 1
same np2 2
same np3-zstd 3 --codec raw+zstd
same np5 5
same rr-np4 4 --placement "$tmp/rr.json"
same replicas-np4 4 --placement "$tmp/replicas.json" --codec raw+zstd:3
same uneven-np3 3 --placement "$tmp/uneven.json"
same presum-np2 2 --combine presum          # one worker: pre-summing cannot change the order
# micro-batch overlap on and off (default: on under mpirun), 2..5 ranks
for np in 2 3 4 5; do
    same overlap-on-np$np $np --overlap on
    same overlap-off-np$np $np --overlap off
done
same overlap-replicas-np4 4 --placement "$tmp/replicas.json" --overlap on --codec raw+zstd
"$spex" logits --model "$f32" --tokens $T --mtp --overlap on >"$tmp/ov1.json" 2>/dev/null || fail "overlap one process exit $?"
cmp -s "$tmp/ref.json" "$tmp/ov1.json" || fail "overlap in one process differs"
"$spex" logits --model "$f32" --tokens $T --mtp --overlap on --loopback-ranks 3 >"$tmp/ov3.json" 2>/dev/null \
    || fail "overlap loopback exit $?"
cmp -s "$tmp/ref.json" "$tmp/ov3.json" || fail "overlap over loopback ranks differs"

# a placement derived from measured load (EPLB: per-layer tables with replicas) under real mpirun
mpi 5 logits --model "$f32" --tokens $T --mtp --ep-stats "$tmp/load.json" >/dev/null 2>&1 || fail "load stats exit $?"
"$spex" placement --model "$f32" --np 5 --from-stats "$tmp/load.json" --redundant 6 --json >"$tmp/eplb.json" 2>/dev/null \
    || fail "placement --from-stats exit $?"
grep -q '"layers":\[{"layer":1' "$tmp/eplb.json" || fail "derived placement has no per-layer tables"
same eplb-np5 5 --placement "$tmp/eplb.json"
same eplb-np5-zstd 5 --placement "$tmp/eplb.json" --codec raw+zstd

"$spex" logits --model "$f32" --tokens $T --decode --no-ep >"$tmp/refd.json" 2>/dev/null
mpi 4 logits --model "$f32" --tokens $T --decode --placement "$tmp/replicas.json" >"$tmp/d4.json" 2>/dev/null \
    || fail "decode np4 exit $?"
cmp -s "$tmp/refd.json" "$tmp/d4.json" || fail "decode with replicas differs from one process"
for ov in on off; do
    mpi 3 logits --model "$f32" --tokens $T --decode --overlap $ov >"$tmp/d3$ov.json" 2>/dev/null || fail "decode overlap $ov exit $?"
    cmp -s "$tmp/refd.json" "$tmp/d3$ov.json" || fail "decode with --overlap $ov differs from one process"
done

"$spex" logits --model "$fp8" --tokens $T --no-ep >"$tmp/ref8.json" 2>/dev/null
mpi 3 logits --model "$fp8" --tokens $T --placement-policy round-robin >"$tmp/fp8.json" 2>/dev/null || fail "fp8 np3 exit $?"
cmp -s "$tmp/ref8.json" "$tmp/fp8.json" || fail "FP8 checkpoint differs from one process"

# ---- lossy codecs within their bounds (docs/expert-parallelism.md)
for spec in "bf16 0.02" "fp8 1.2" "fp8+zstd 1.2"; do
    set -- $spec
    mpi 4 logits --model "$f32" --tokens $T --codec "$1" >"$tmp/lossy.json" 2>/dev/null || { fail "$1 exit $?"; continue; }
    /usr/bin/python3 - "$tmp/ref.json" "$tmp/lossy.json" "$2" <<'PY' || fail "$1 outside its bound"
import json, sys
a, b = (json.load(open(f))["logits"] for f in sys.argv[1:3])
d = max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))
assert 0 < d <= float(sys.argv[3]), d
PY
done

# ---- greedy generation
"$spex" generate --model "$f32" --tokens 5,17,42 -n 24 --json --no-ep >"$tmp/g1.json" 2>/dev/null
mpi 3 generate --model "$f32" --tokens 5,17,42 -n 24 --json --placement "$tmp/uneven.json" >"$tmp/g3.json" 2>/dev/null \
    || fail "generate np3 exit $?"
mpi 4 generate --model "$f32" --tokens 5,17,42 -n 24 --json --spec-k 2 --codec raw+zstd >"$tmp/g4.json" 2>/dev/null \
    || fail "generate spec np4 exit $?"
mpi 5 generate --model "$f32" --tokens 5,17,42 -n 24 --json --spec-k 3 --overlap off >"$tmp/g5.json" 2>/dev/null \
    || fail "generate spec np5 overlap off exit $?"
/usr/bin/python3 - "$tmp/g1.json" "$tmp/g3.json" "$tmp/g4.json" "$tmp/g5.json" <<'PY' || fail "generated tokens differ"
import json, sys
g = [json.load(open(f))["tokens"] for f in sys.argv[1:5]]
assert len(g[0]) == 24 and g[0] == g[1] == g[2] == g[3], g
PY
# speculation under mpirun: greedy tokens with --spec-k 1..4 equal one process's --spec-k 0, on every
# golden checkpoint (F32, BF16 without q_lora, FP8), each with its own prompt and a different layout
np=2
for ck in tiny-f32:5,17,42,3 tiny-bf16-noq:250,1,64,128,9 tiny-fp8:7,8,99,100,3,2; do
    m=$data/golden/${ck%%:*} p=${ck#*:}
    "$spex" generate --model "$m" --tokens "$p" -n 20 --json --no-ep >"$tmp/s0.json" 2>/dev/null || fail "$ck: reference"
    for k in 1 2 3 4; do
        np=$((np % 4 + 2))     # 3, 4, 5, 2, ... worker layouts
        mpi $np generate --model "$m" --tokens "$p" -n 20 --json --spec-k $k >"$tmp/s$k.json" 2>/dev/null \
            || fail "$ck: spec-k $k np $np exit $?"
    done
    /usr/bin/python3 - "$tmp"/s{0,1,2,3,4}.json <<'PY' || fail "${ck%%:*}: speculation under mpirun changed greedy tokens"
import json, sys
g = [json.load(open(f)) for f in sys.argv[1:]]
t = [x["tokens"] for x in g]
assert len(t[0]) == 20 and all(x == t[0] for x in t), t
assert all(x["stats"]["drafted"] > 0 for x in g[1:]), "no drafts were made"
PY
done

# ---- statistics
mpi 3 logits --model "$f32" --tokens $T --codec bf16+zstd --overlap on --ep-stats "$tmp/st.json" >/dev/null 2>"$tmp/st.err" \
    || fail "stats run exit $?"
grep -q "expert parallelism: 2 worker rank" "$tmp/st.err" || fail "no summary table on stderr"
/usr/bin/python3 - "$tmp/st.json" <<'PY' || fail "stats JSON content"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["world"] == 3 and s["dispatch_codec"] == "bf16+zstd" and s["combine"] == "presum"
t = s["total"]
assert t["rows"] == 2 * 12 and t["pairs"] == 4 * t["rows"], t
o = s["overlap"]                                   # --overlap on: 12 rows = 2 micro-batches
assert o["micro_batches"] == 2 and o["calls"] == t["calls"] == 4, o
assert 0 < o["hidden_seconds"] <= o["comm_seconds"] and abs(o["hidden_fraction"] * o["comm_seconds"] - o["hidden_seconds"]) < 1e-9, o
assert t["dispatch"]["messages"] == 8 and t["dispatch"]["raw_bytes"] > 0, t       # 2 MoE layers x 2 micro-batches x 2 ranks
assert 1.5 < t["dispatch"]["ratio"] < 3, t["dispatch"]
assert [l["layer"] for l in s["layers"]] == [1, 2]
assert len(s["ranks"]) == 2 and all(r["weight_bytes"] > 0 and r["max_rss_bytes"] > 0 for r in s["ranks"])
assert sum(r["experts_hosted"] for r in s["ranks"]) == 16
for l in s["expert_load"]:
    assert sum(l["tokens_per_expert"]) == 48 and l["max"] >= l["mean"] == 3.0, l
PY
# --stats is the same file for logits; generate folds it into its own stats object
mpi 3 logits --model "$f32" --tokens $T --codec bf16+zstd --overlap on --stats "$tmp/st2.json" >/dev/null 2>&1 \
    || fail "logits --stats exit $?"
mpi 3 generate --model "$f32" --tokens $T -n 6 --spec-k 2 --stats "$tmp/gst.json" >/dev/null 2>&1 \
    || fail "generate --stats exit $?"
T32=$(seq -s, 3 3 96)   # 32 tokens: the default overlaps steps of 32+ rows (cli_ep.h CLI_EP_OVERLAP_MIN_ROWS)
mpi 3 generate --model "$f32" --tokens $T32 -n 2 --stats "$tmp/gst32.json" >/dev/null 2>&1 \
    || fail "generate (32-token prompt) --stats exit $?"
/usr/bin/python3 - "$tmp/st.json" "$tmp/st2.json" "$tmp/gst.json" "$tmp/gst32.json" <<'PY' || fail "--stats JSON content"
import json, sys
a, b, g, g32 = (json.load(open(p)) for p in sys.argv[1:])
assert a["total"]["dispatch"] == b["total"]["dispatch"] and a["expert_load"] == b["expert_load"], (a["total"], b["total"])
assert g["generated_tokens"] == 6 and g["steps"] >= 1 and len(g["acceptance_by_position"]) == 2, g
e = g["expert_parallelism"]
assert e["world"] == 3 and e["dispatch_codec"] == "raw" and e["combine"] == "expert", e
assert e["total"]["dispatch"]["messages"] > 0 and sum(r["rows"] for r in e["ranks"]) > 0, e["total"]
o = e["overlap"]                                   # default: neither the 12-row prefill nor decode steps are split
assert o["micro_batches"] == 1, o
o = g32["expert_parallelism"]["overlap"]           # the 32-row prefill is (32+ rows), its decode steps not
assert o["micro_batches"] == 2 and o["calls"] == g32["expert_parallelism"]["total"]["calls"] and 0 <= o["hidden_fraction"] < 1, o
PY

# ---- failures: non-zero within 30 s (about 3 s expected: --rank-timeout 2 plus the launch), the rank named
expect_fail() {  # expect_fail NAME PATTERN NP ARGS... (env set by the caller)
    local name=$1 pat=$2 np=$3
    shift 3
    local t0=$SECONDS
    mpi "$np" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
    local rc=$?
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then   # the launcher hang above: one more run decides
        echo "note: $name: mpirun hung after its ranks ended; running it once more" >&2
        t0=$SECONDS
        mpi "$np" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
        rc=$?
    fi
    local dt=$((SECONDS - t0))
    [ $rc -ne 0 ] || fail "$name: exit 0"
    [ $dt -le 30 ] || fail "$name: took $dt s"
    grep -q -- "$pat" "$tmp/$name.err" || fail "$name: stderr lacks '$pat': $(head -5 "$tmp/$name.err")"
    [ -s "$tmp/$name.out" ] && fail "$name: printed to stdout"
}
SPEX_TEST_STALL=2:2 expect_fail stall "rank 2 did not answer the dispatch of layer 2" 3 \
    logits --model "$f32" --tokens $T --rank-timeout 2 --overlap off
# with overlap the second dispatch is layer 1's second micro-batch, sent while the first is away
SPEX_TEST_STALL=2:2 expect_fail stall-overlap "rank 2 did not answer the dispatch of layer 1" 3 \
    logits --model "$f32" --tokens $T --rank-timeout 2 --overlap on
SPEX_TEST_EXIT=1:1 OMPI_MCA_orte_abort_on_non_zero_status=0 expect_fail exit "rank 1 did not answer the dispatch of layer 1" 3 \
    logits --model "$f32" --tokens $T --rank-timeout 2
SPEX_TEST_EXIT=1:1 expect_fail exit-launcher "exited" 3 logits --model "$f32" --tokens $T
expect_fail unhosted "expert 15 is not hosted by any rank" 2 logits --model "$f32" --tokens $T --placement "$tmp/short.json"
expect_fail outside "rank 3 is outside the job's worker ranks 1..2" 3 logits --model "$f32" --tokens $T --placement "$tmp/rr.json"
t0=$SECONDS
timeout 60 mpirun --oversubscribe -np 2 "$spex" logits --model "$f32" --tokens $T : \
    -np 1 "$spex" logits --model "$data/golden/tiny-bf16-noq" --tokens $T >"$tmp/mm.out" 2>"$tmp/mm.err" && fail "mismatch: exit 0"
grep -q "rank 2 refused the session: model identity" "$tmp/mm.err" || fail "mismatch: $(head -3 "$tmp/mm.err")"
[ $((SECONDS - t0)) -le 30 ] || fail "mismatch took too long"

# Same headers, other weights (issue 16 item 1): the high byte of every value of every expert's
# down_proj flipped in a copy. The model identity cannot see it; the content digests in the hello do.
mkdir -p "$tmp/same" "$tmp/flipped"
cp "$f32/config.json" "$f32/model.safetensors" "$tmp/same/"
cp "$f32/config.json" "$tmp/flipped/"
python3 - "$f32/model.safetensors" "$tmp/flipped/model.safetensors" <<'PY'
import json, struct, sys
b = bytearray(open(sys.argv[1], 'rb').read())
n = struct.unpack('<Q', b[:8])[0]
for name, t in json.loads(b[8:8 + n]).items():
    if '.mlp.experts.' in name and name.endswith('down_proj.weight'):
        a, e = t['data_offsets']
        for i in range(8 + n + a + 3, 8 + n + e, 4):
            b[i] ^= 0xff
open(sys.argv[2], 'wb').write(b)
PY
timeout 60 mpirun --oversubscribe -np 2 "$spex" generate --model "$tmp/same" --tokens $T -n 8 : \
    -np 1 "$spex" generate --model "$tmp/flipped" --tokens $T -n 8 >"$tmp/flip.out" 2>"$tmp/flip.err" \
    && fail "other weights: exit 0 ($(head -c 200 "$tmp/flip.out"))"
grep -q "rank 2 refused the session: expert weights differ from the coordinator's: layer 1 expert" "$tmp/flip.err" \
    || fail "other weights: $(grep -v '^ *$' "$tmp/flip.err" | head -3)"
[ -s "$tmp/same/spex-expert-digests.bin" ] || fail "the coordinator did not cache its expert digests"
grep -q "expert digests: .* hashed in" "$tmp/flip.err" || fail "digest cost not logged"
timeout 60 mpirun --oversubscribe -np 3 "$spex" generate --model "$tmp/same" --tokens $T -n 8 >"$tmp/same.out" 2>"$tmp/same.err" \
    || fail "same weights refused: $(tail -2 "$tmp/same.err")"
grep -q "hashed in" "$tmp/same.err" && fail "the cached digests were not used"

# SIGKILL: rank 1 stalls (so the run is still going), then is killed; the launcher ends the job
# (within 30 s; the rank timeout, 120 s, and the test's timeout, 150 s, are far beyond, so only the
# launcher noticing the death can pass).
t0=$SECONDS
SPEX_TEST_STALL=1:1 SPEX_TEST_TAG=$tmp timeout 150 mpirun --oversubscribe -np 3 "$spex" logits --model "$f32" --tokens $T \
    --rank-timeout 120 >"$tmp/kill.out" 2>"$tmp/kill.err" &
job=$!
victim=""
for _ in $(seq 100); do     # rank 1 of this job: the process whose environment has our tag and rank 1
    for env in /proc/[0-9]*/environ; do
        e=$( { tr '\0' '\n' <"$env"; } 2>/dev/null) || continue
        grep -qx "SPEX_TEST_TAG=$tmp" <<<"$e" && grep -qx "OMPI_COMM_WORLD_RANK=1" <<<"$e" && victim=${env//[^0-9]/}
    done
    [ -n "$victim" ] && grep -q "stalling" "$tmp/kill.err" && break
    sleep 0.1
done
if [ -z "$victim" ]; then fail "kill: rank 1 not found"; kill $job; else
    kill -9 "$victim"
    t1=$SECONDS
    wait $job
    rc=$?
    [ $rc -ne 0 ] || fail "kill: exit 0"
    [ $((SECONDS - t1)) -le 30 ] || fail "kill: job lasted $((SECONDS - t1)) s after the kill"
    grep -q "rank 1" "$tmp/kill.err" || fail "kill: rank 1 not named: $(cat "$tmp/kill.err")"
fi

# ---- spex placement
"$spex" placement --model "$f32" --np 4 >"$tmp/pl.txt" || fail "placement exit $?"
grep -q "^1 .* 0-5$" "$tmp/pl.txt" || fail "placement table: $(cat "$tmp/pl.txt")"
"$spex" placement --model "$f32" --np 4 --placement "$tmp/replicas.json" --json >"$tmp/pl.json" || fail "placement json"
grep -q '"placement":\[\[1,2,3\],\[1,2\],\[3\]' "$tmp/pl.json" || fail "placement json: $(cat "$tmp/pl.json")"
"$spex" placement --model "$f32" --np 2 --placement "$tmp/short.json" 2>"$tmp/pl.err" && fail "short placement accepted"
grep -q "expert 15 is not hosted" "$tmp/pl.err" || fail "placement error: $(cat "$tmp/pl.err")"

# ---- the workers' options
mpi 3 logits --model "$f32" --tokens 5,17 --idle-timeout soon >"$tmp/wo.out" 2>"$tmp/wo.err"
rc=$?
[ $rc -eq 2 ] || fail "bad --idle-timeout: exit $rc, want 2"
grep -q -- "--idle-timeout" "$tmp/wo.err" || fail "bad --idle-timeout not named: $(head -3 "$tmp/wo.err")"
[ -s "$tmp/wo.out" ] && fail "bad --idle-timeout: printed to stdout"
same eq-form-np3 3 --rank-timeout=5 --idle-timeout=30
# rank 0 takes "--idle-timeout" as --stats' file name; the workers see --idle-timeout without a value
(cd "$tmp" && mpi 2 logits --model "$f32" --tokens $T --stats --idle-timeout >wo.out 2>wo.err) \
    && fail "a worker with a bad option: job exit 0"
grep -q -- "--idle-timeout needs a value" "$tmp/wo.err" || fail "refusal reason missing: $(head -5 "$tmp/wo.err")"

if [ $fails -ne 0 ]; then echo "$fails check(s) failed"; exit 1; fi
echo "all expert-parallel checks passed"
