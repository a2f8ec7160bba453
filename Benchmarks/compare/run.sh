#!/usr/bin/env bash
# The side-by-side comparison, one command (issue 11): PostgreSQL running the
# seed's design, Redis running Lua scripts that do what the engine does, and
# AllocationEngine (strict), the same work against all three, the final state
# of each checked for oversell after every run. Writes
# Benchmarks/compare/results/compare.{json,md,svg} (compare-quick.* in quick mode).
#
#   bash Benchmarks/compare/run.sh                    # full: 3 rounds, about 30-40 min on 2 cores
#   COMPARE_QUICK=1 bash Benchmarks/compare/run.sh    # quick: 1 round, small sizes, under 5 min
#
# On a fresh Debian/Ubuntu machine it installs what is missing (postgresql,
# redis-server, redis-tools: apt-get, needs root) and builds the engine
# (swift build -c release). Private instances on loopback, data in a temp dir:
# the engine on 7391, Redis on 7392, PostgreSQL on 7393 (as user postgres when
# run as root). Not part of CI: it installs packages and takes long.
set -euo pipefail
cd "$(dirname "$0")/../.."

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-benchmark >/dev/null || missing+=(redis-tools)
ls -d /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -q >&2
  $SUDO apt-get install -y -q "${missing[@]}" >&2
  # The packages start system-wide services; the comparison uses its own.
  $SUDO service redis-server stop >/dev/null 2>&1 || true
fi
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }

if [ ! -x .build/release/allocation-engine ] || [ ! -x .build/release/engine-bench ] || [ -z "${COMPARE_NO_BUILD:-}" ]; then
  swift build -c release >&2
fi
exec python3 Benchmarks/compare/compare.py
