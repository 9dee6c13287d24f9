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
      gnuplot-nox)                        # scaling-study figures (launch/scaling-plot), PNG and SVG
if [ "${1:-}" != "--no-python" ]; then
  pkgs+=(python3-numpy python3-torch python3-regex)  # references under tests/, trainer under tools/
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then echo "setup: all ${#pkgs[@]} packages present"; exit 0; fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
