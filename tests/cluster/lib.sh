# shellcheck shell=bash disable=SC2034  # sourced: src, SKIP are used by the tests
# lib.sh - shared helpers of the cluster tests (sourced). ctest treats exit 77
# as SKIP (SKIP_RETURN_CODE); a test skips only when it cannot run at all here
# (not root, no network namespaces), never because a tool is missing: CI
# installs every tool (scripts/setup.sh), so a missing one is a failure.
SKIP=77
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)   # the source tree
fails=0
t_start=$(date +%s.%N)

skip() { echo "SKIP: $*"; exit $SKIP; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
die() { echo "FAIL: $*"; exit 1; }
note() { echo "--- $* (+$(elapsed)s)"; }
elapsed() { printf '%.1f' "$(echo "$(date +%s.%N) - $t_start" | bc)"; }
finish() {
    echo "time: $(elapsed) s"
    if [ "$fails" -ne 0 ]; then echo "$fails check(s) failed"; exit 1; fi
    echo "PASS"
    exit 0
}
need_root() { [ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces / daemons running as root); CI runs as root"; }
need_tools() {
    local t
    for t in "$@"; do command -v "$t" >/dev/null || die "$t not found: run scripts/setup.sh"; done
}
need_netns() {  # can this machine create network namespaces and veth pairs?
    need_root
    need_tools ip tc
    local ns=spex-probe-$$
    if ! ip netns add "$ns" 2>/dev/null; then skip "cannot create network namespaces here (ip netns add failed)"; fi
    if ! ip -n "$ns" link add spex-va type veth peer name spex-vb 2>/dev/null; then
        ip netns del "$ns"
        skip "no veth support in this kernel"
    fi
    ip netns del "$ns"
}
# true when spex is built with MPI (expert parallelism: rank 0 coordinator + expert workers)
spex_has_mpi() { grep -q 'libmpi\.so' <<<"$(ldd "$1" 2>/dev/null)"; }
# wait_for SECONDS COMMAND...: poll COMMAND every 0.2 s until it succeeds; false on timeout
wait_for() {
    local t=$1
    shift
    local end=$(($(date +%s) + t))
    until "$@"; do
        [ "$(date +%s)" -lt $end ] || return 1
        sleep 0.2
    done
}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
