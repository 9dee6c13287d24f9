#!/usr/bin/env bash
# test_netns_mpirun.sh - mpirun across "hosts" in network namespaces
# (launch/netns-cluster + launch/spex-mpirun): ranks land on h1, h2, h3, data
# exchanged between them arrives intact, and the switch ports' byte counters
# show that it crossed the links; `spex logits` on a golden checkpoint with
# expert workers on the other hosts prints exactly (byte for byte) what one
# process prints; `down` leaves no namespace and no process behind.
# Usage: test_netns_mpirun.sh SPEX_BINARY MPI_PROBE_BINARY TESTS_DATA_DIR
set -uo pipefail
# shellcheck source=tests/cluster/lib.sh
. "$(dirname "$0")/lib.sh"
spex=$(readlink -f "$1")
probe=$(readlink -f "$2")
data=$(cd "$3" && pwd)
need_netns
need_tools mpirun bc
export SPEX_NETNS_NAME=spt$$
nc=$src/launch/netns-cluster
work=$(mktemp -d /tmp/spex-netns-test-XXXXXX)
cleanup() { "$nc" down >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

note "netns cluster up"
timeout 30 "$nc" up --hosts 3 || die "netns-cluster up"
port_bytes() { "$nc" counters | awk -v h="$1" '$1 == h { print $2 + $3 }'; }

# ---------------------------------------------------------------- MPI data across the links
note "mpi_probe: 3 ranks on 3 hosts, 1 MiB to each peer, 5 rounds"
h2a=$(port_bytes h2) h3a=$(port_bytes h3)
timeout -s KILL 60 "$nc" run -- "$src/launch/spex-mpirun" --workers 2 --spex "$probe" -- 262144 5 \
    >"$work/probe.out" 2>"$work/probe.err" || fail "mpi_probe across hosts exit $?: $(cat "$work/probe.err")"
cat "$work/probe.out"
for r in "0 of 3 on h1" "1 of 3 on h2" "2 of 3 on h3"; do
    grep -q "rank $r" "$work/probe.out" || fail "no 'rank $r' (rank 0 coordinator on the first host, workers on the others)"
done
grep -q "errors=0" "$work/probe.out" || fail "data exchanged between hosts was wrong"
h2=$(($(port_bytes h2) - h2a)) h3=$(($(port_bytes h3) - h3a))
# each host sends 2 peers x 5 rounds x 1 MiB and receives as much: at least 20 MiB through its port
echo "bytes through the switch ports: h2 $h2, h3 $h3"
[ "$h2" -ge 20971520 ] && [ "$h3" -ge 20971520 ] || fail "too few bytes crossed the links (h2 $h2, h3 $h3; want >= 20971520)"

# ---------------------------------------------------------------- spex logits, distributed vs one process
m=$data/golden/tiny-f32
toks=5,17,42,3,99,250,7
"$spex" logits --model "$m" --tokens $toks >"$work/single.json" || die "single-process spex logits"
spex_has_mpi "$spex" || die "$spex is not built with MPI (expert parallelism)"
note "spex logits: coordinator on h1, expert workers on h2 and h3"
h2a=$(port_bytes h2) h3a=$(port_bytes h3)
timeout -s KILL 120 "$nc" run -- "$src/launch/spex-mpirun" --workers 2 --spex "$spex" -- \
    logits --model "$m" --tokens $toks --ep-stats "$work/ep.json" >"$work/dist.json" 2>"$work/dist.err" \
    || fail "distributed spex logits exit $?: $(tail -20 "$work/dist.err")"
cmp "$work/single.json" "$work/dist.json" || fail "distributed logits differ from the single-process ones"
cmp -s "$work/single.json" "$work/dist.json" && echo "distributed logits (coordinator h1, workers h2 h3) == single process, byte for byte"
h2=$(($(port_bytes h2) - h2a)) h3=$(($(port_bytes h3) - h3a))
# each worker's dispatch + combine bytes (from spex's own statistics) must have crossed its host's link
/usr/bin/python3 - "$work/ep.json" "$h2" "$h3" <<'PY' || fail "expert traffic did not cross the links"
import json, sys
st = json.load(open(sys.argv[1]))
port = {1: int(sys.argv[2]), 2: int(sys.argv[3])}
assert st["world"] == 3, st["world"]
for r in st["ranks"]:
    wire = r["dispatch"]["wire_bytes"] + r["combine"]["wire_bytes"]
    print(f"rank {r['rank']} (h{r['rank'] + 1}): {wire} expert bytes on the wire, {port[r['rank']]} bytes through its switch port")
    assert wire > 0 and port[r["rank"]] >= wire, f"rank {r['rank']}: port saw {port[r['rank']]} < {wire}"
PY

note "netns cluster down"
state=$("$nc" statedir)
"$nc" down >/dev/null || fail "netns-cluster down"
for ns in sw h1 h2 h3; do [ -e "/run/netns/$SPEX_NETNS_NAME-$ns" ] && fail "namespace $SPEX_NETNS_NAME-$ns left behind"; done
[ -e "$state" ] && fail "state directory $state left behind"
finish
