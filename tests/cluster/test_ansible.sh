#!/usr/bin/env bash
# test_ansible.sh - ansible/ for real: --syntax-check, ansible-lint (production
# profile), then site.yml run twice against localhost (build from a git
# checkout, model copy, hostfile, systemd unit) and twice against hosts in
# network namespaces (binary install, model, hostfile; packages on the real
# machine only). The second run of each must change nothing. The provisioned
# trees are then used: the installed spex prints the same logits as the build
# tree, and the namespace cluster runs an MPI job over the hostfile Ansible wrote.
# Usage: test_ansible.sh SPEX_BINARY TESTS_DATA_DIR
set -uo pipefail
# shellcheck source=tests/cluster/lib.sh
. "$(dirname "$0")/lib.sh"
spex=$(readlink -f "$1")
data=$(cd "$2" && pwd)
need_root
need_tools ansible-playbook ansible-lint git
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 ANSIBLE_RETRY_FILES_ENABLED=0 ANSIBLE_PIPELINING=1 \
       ANSIBLE_LOCALHOST_WARNING=0
work=$(mktemp -d /tmp/spex-ansible-test-XXXXXX)
export SPEX_NETNS_NAME=spa$$
nc=$src/launch/netns-cluster
cleanup() { [ -e "/run/spex-netns/$SPEX_NETNS_NAME" ] && "$nc" down >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
cd "$src/ansible" || exit 1

note "syntax check and lint"
ansible-playbook --syntax-check -i inventory.example.ini site.yml || fail "syntax check"
ansible-lint --nocolor --offline --profile production site.yml roles >"$work/lint" 2>&1 || fail "ansible-lint: $(cat "$work/lint")"
tail -1 "$work/lint"
grep -q "Passed with production profile" "$work/lint" || fail "ansible-lint did not pass the production profile"

mkdir -p "$work/model"
cp "$data/golden/tiny-f32/config.json" "$data/golden/tiny-f32/model.safetensors" \
   "$data/tiny-tokenizer/tokenizer.json" "$data/tiny-tokenizer/tokenizer_config.json" "$work/model/"

# play NAME INVENTORY: run site.yml twice; the first must succeed, the second must change nothing
play() {
    local name=$1 inv=$2 i
    for i in 1 2; do
        note "$name: ansible-playbook run $i"
        timeout 600 ansible-playbook -i "$inv" site.yml >"$work/$name.$i.log" 2>&1 \
            || { fail "$name run $i failed"; tail -40 "$work/$name.$i.log"; return 1; }
        sed -n '/PLAY RECAP/,$p' "$work/$name.$i.log"
    done
    if grep -A20 "PLAY RECAP" "$work/$name.2.log" | grep -Eq "changed=[1-9]|failed=[1-9]|unreachable=[1-9]"; then
        fail "$name: second run was not idempotent"
        grep -B2 "^changed:" "$work/$name.2.log"
    fi
}

# ---------------------------------------------------------------- localhost: build from source
if git -C "$src" rev-parse --verify -q HEAD >/dev/null; then
    method=source
else
    method=binary   # not a git checkout (e.g. a source tarball): install the built binary instead
    echo "NOTE: $src is not a git checkout; installing the built binary instead of building"
fi
L=$work/local
cat >"$work/local.ini" <<INI
[spex_nodes]
localhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3 spex_slots=2

[spex_nodes:vars]
spex_prefix=$L/opt/spex
spex_install_method=$method
spex_source_repo=$src
spex_source_version=$(git -C "$src" rev-parse HEAD 2>/dev/null)
spex_build_jobs=2
spex_binary=$spex
spex_model_src=$work/model
spex_deps_update_cache=false
spex_service_enabled=true
spex_service_unit_dir=$L/systemd
spex_service_port=8123
INI
play localhost "$work/local.ini"
toks=5,17,42,3
"$spex" logits --model "$data/golden/tiny-f32" --tokens $toks >"$work/ref.json"
"$L/opt/spex/bin/spex" logits --model "$L/opt/spex/models/model" --tokens $toks >"$work/inst.json" \
    || fail "installed spex does not run on the installed model"
cmp -s "$work/ref.json" "$work/inst.json" || fail "installed spex ($method) prints different logits"
grep -qx "localhost slots=2" "$L/opt/spex/etc/hostfile" || fail "hostfile: $(cat "$L/opt/spex/etc/hostfile")"
u=$L/systemd/spex.service
grep -q "^ExecStart=$L/opt/spex/bin/spex-mpirun --hostfile $L/opt/spex/etc/hostfile .*-- serve --model $L/opt/spex/models/model --host 127.0.0.1 --port 8123" "$u" \
    || fail "systemd unit: $(cat "$u")"
if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify "$u" >"$work/verify" 2>&1 || fail "systemd-analyze verify: $(cat "$work/verify")"
fi
out=$("$L/opt/spex/bin/spex-mpirun" --dry-run -H "$L/opt/spex/etc/hostfile" -- logits 2>&1)
grep -q "^+ mpirun -np 2 .* $L/opt/spex/bin/spex logits" <<<"$out" || fail "installed spex-mpirun does not pick the installed spex: $out"

# ---------------------------------------------------------------- hosts in network namespaces
if ! (need_netns) >/dev/null; then
    echo "SKIP part: no network namespaces here; the netns-host runs did not happen"
    finish
fi
timeout 30 "$nc" up --hosts 3 >/dev/null || die "netns-cluster up"
N=$work/nodes
{
    "$nc" inventory
    echo "localhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3"
    echo
    echo "[spex_nodes:vars]"
    # the hosts share this machine's filesystem: a prefix of their own each (the apt play runs on
    # localhost only: the namespaces have no route to a mirror and share one apt lock)
    echo "spex_prefix=$N/{{ inventory_hostname }}/opt/spex"
    echo "spex_install_method=binary"
    echo "spex_binary=$spex"
    echo "spex_model_src=$work/model"
    echo "spex_deps_install=false"
    echo
    echo "[spex_package_hosts]"
    echo "localhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3 spex_deps_update_cache=false spex_install_method=binary"
} | grep -v "^localhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3$" >"$work/netns.ini"
cat "$work/netns.ini"
play netns "$work/netns.ini"
for h in h1 h2 h3; do
    [ -x "$N/$h/opt/spex/bin/spex" ] || fail "$h: no spex installed"
    cmp -s "$work/model/model.safetensors" "$N/$h/opt/spex/models/model/model.safetensors" || fail "$h: model not copied"
done
printf 'h1 slots=1\nh2 slots=1\nh3 slots=1\n' | diff - <(grep -v '^#' "$N/h1/opt/spex/etc/hostfile") || fail "netns hostfile"
# the hostfile Ansible wrote drives a real job over the namespace links
note "MPI job over the Ansible-written hostfile"
timeout -s KILL 60 "$nc" run -- "$N/h1/opt/spex/bin/spex-mpirun" -H "$N/h1/opt/spex/etc/hostfile" --spex /bin/sh -- -c hostname \
    >"$work/hosts.out" 2>"$work/hosts.err" || fail "mpirun over the Ansible hostfile: $(cat "$work/hosts.err")"
[ "$(sort "$work/hosts.out" | tr '\n' ' ')" = "h1 h2 h3 " ] || fail "ranks ran on: $(cat "$work/hosts.out")"
"$nc" down >/dev/null || fail "netns-cluster down"
finish
