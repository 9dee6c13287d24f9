#!/usr/bin/env bash
# Install every Debian 12 package Spex needs to build, test and train (idempotent).
# Usage: scripts/setup.sh [--no-python]   (run as root, or with sudo available)
set -euo pipefail
pkgs=(build-essential cmake pkg-config git
      libopenmpi-dev openmpi-bin          # expert parallelism (MPI ranks)
      libprotobuf-c-dev protobuf-c-compiler  # wire headers
      libzstd-dev                         # payload compression
      libcriterion-dev                    # unit tests
      libonig-dev                         # tokenizer pre-tokenizer regexes
      libmicrohttpd-dev                   # HTTP front end
      libcjson-dev                        # config.json, tokenizer.json, CLI JSON
      libxxhash-dev                       # XXH32 wire checksum, XXH3 expert digests (transport/)
      libcurl4-openssl-dev                # HTTP client of the serve load generator (spex bench serve)
      clang libclang-rt-14-dev            # libFuzzer + sanitizer runtimes: tests/fuzz/, scripts/fuzz.sh
      curl
      # cluster launch and its tests (launch/, ansible/, tests/cluster/): Slurm started by hand,
      # srun --mpi=pmix, hosts in network namespaces, Ansible provisioning
      slurm-wlm slurmd slurmctld munge libpmix2 iproute2 ansible ansible-lint bc
      gnuplot-nox                         # scaling-study figures (launch/scaling-plot), PNG and SVG
      python3-jinja2)                     # the reference the chat-template interpreter is checked against (tests/ref/)
if [ "${1:-}" != "--no-python" ]; then
  pkgs+=(python3-numpy python3-torch python3-regex)  # references under tests/, trainer under tools/
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The official openai npm client, pinned by tests/node/package-lock.json, into tests/node/node_modules
# (not committed) for tests/cli/test_serve_openai_sdk.sh. Needs Node >= 20 and npm; without them
# that test skips.
node_client() {
  local dir
  dir="$(cd "$(dirname "$0")/.." && pwd)/tests/node"
  if ! command -v npm >/dev/null; then echo "setup: no npm: the openai client tests will skip"; return 0; fi
  if [ -f "$dir/node_modules/openai/package.json" ] &&
     [ "$(node -p "require('$dir/node_modules/openai/package.json').version")" = \
       "$(node -p "require('$dir/package-lock.json').packages['node_modules/openai'].version")" ]; then
    return 0
  fi
  echo "setup: installing the pinned openai npm client into tests/node"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}
if [ ${#missing[@]} -eq 0 ]; then echo "setup: all ${#pkgs[@]} packages present"; node_client; exit 0; fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
node_client
