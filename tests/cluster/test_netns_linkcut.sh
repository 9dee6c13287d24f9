#!/usr/bin/env bash
# test_netns_linkcut.sh - a link cut during a distributed run: h3's cable is
# pulled at the switch (ip link set down) while ranks on h1..h3 exchange data;
# the job must end by itself within a bounded time, nonzero, with an error that
# names the rank that was lost, and `netns-cluster down` must clean up every
# process left on the cut-off host.
# Usage: test_netns_linkcut.sh SPEX_BINARY
set -uo pipefail
# shellcheck source=tests/cluster/lib.sh
. "$(dirname "$0")/lib.sh"
spex=$(readlink -f "$1")
need_netns
need_tools mpirun bc
export SPEX_NETNS_NAME=spc$$
nc=$src/launch/netns-cluster
work=$(mktemp -d /tmp/spex-linkcut-test-XXXXXX)
cleanup() { "$nc" down >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
bound=${SPEX_LINKCUT_BOUND:-60}   # seconds from the cut to the end of the job

timeout 30 "$nc" up --hosts 3 >/dev/null || die "netns-cluster up"
spex_has_mpi "$spex" || die "$spex is not built with MPI (expert parallelism)"
# a long context: 16000 tokens take well over the time to the cut, even on a fast machine
"$spex" synth --out "$work/model" --preset small --vocab 320 --max-pos 16384 >/dev/null || die "spex synth"
what="spex generate, expert workers on h2 and h3, --rank-timeout 5"
cmd=("$src/launch/spex-mpirun" --workers 2 --spex "$spex" -- generate --model "$work/model" --tokens 5,17,42 \
     -n 16000 --rank-timeout 5)
note "running $what"
timeout -s KILL $((bound + 60)) "$nc" run -- "${cmd[@]}" >"$work/out" 2>"$work/err" &
job=$!
# cut only once tokens stream (every rank started and exchanging data): a fixed
# sleep cut the link while mpirun was still starting its daemons on a loaded machine
for _ in $(seq 600); do [ -s "$work/out" ] && break; kill -0 $job 2>/dev/null || break; sleep 0.1; done
[ -s "$work/out" ] || die "no token within 60 s of the start: $(tail -20 "$work/err")"
kill -0 $job 2>/dev/null || die "the job ended before the link was cut: $(tail -20 "$work/err")"
note "cutting h3's link"
"$nc" link h3 down
t_cut=$(date +%s.%N)
wait $job
rc=$?
took=$(echo "$(date +%s.%N) - $t_cut" | bc)
printf 'job ended %.1f s after the cut, exit %d; its errors:\n' "$took" "$rc"
grep -v -e '^\[h[0-9]*:[0-9]*\] plm:rsh: Warning: setpgid' -e '^ *$' "$work/err" | head -20
[ "$rc" -ne 0 ] || fail "the job succeeded although h3 was cut off"
[ "$rc" -ne 137 ] || fail "the job hung: killed by the test's timeout ($((bound + 60)) s)"
[ "$(echo "$took <= $bound" | bc)" = 1 ] || fail "the job took ${took}s to end after the cut (bound ${bound}s)"
grep -Eq "rank 2\b.*(lost|unreachable|no data|no reply|timed out|dead|failed)|(lost|unreachable|no data|no reply|timed out|dead|failed).*rank 2\b" "$work/err" \
    || fail "the error does not name rank 2 (on h3)"

note "cleanup"
left=$(ip netns pids "$SPEX_NETNS_NAME-h3" | wc -l)
echo "processes left on the cut-off host h3: $left"
"$nc" down >/dev/null || fail "netns-cluster down"
for ns in sw h1 h2 h3; do [ -e "/run/netns/$SPEX_NETNS_NAME-$ns" ] && fail "namespace $SPEX_NETNS_NAME-$ns left behind"; done
finish
