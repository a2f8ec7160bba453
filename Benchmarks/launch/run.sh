#!/usr/bin/env bash
# The launch simulation, one command: hundreds of clients over TCP against the release
# server, kill -9 at random moments, the independent checker after every cycle and at
# the end (docs/benchmarks.md, "Launch simulation").
#
# Sizes from the environment (small by default, a minute or two):
#   LAUNCH_CLIENTS      connections                                   (default 200)
#   LAUNCH_SECONDS      traffic seconds per scenario                  (default 20)
#   LAUNCH_KILL_CYCLES  kill -9 / restart cycles per scenario         (default 3)
#   LAUNCH_SCENARIOS    any of: hot-sellout hot-ample many            (default: all three)
#   LAUNCH_SEED         seed of the workload                          (default 1)
#   LAUNCH_OUT          directory for data, journals, logs, summaries (default: a temp dir)
# The documented long run: LAUNCH_KILL_CYCLES=40 LAUNCH_SECONDS=200 Benchmarks/launch/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

CLIENTS=${LAUNCH_CLIENTS:-200}
SECONDS_PER=${LAUNCH_SECONDS:-20}
CYCLES=${LAUNCH_KILL_CYCLES:-3}
SCENARIOS=${LAUNCH_SCENARIOS:-"hot-sellout hot-ample many"}
SEED=${LAUNCH_SEED:-1}
OUT=${LAUNCH_OUT:-$(mktemp -d /tmp/launch-sim.XXXXXX)}
mkdir -p "$OUT"

if ! python3 -c 'import redis' 2>/dev/null; then
  echo "the checker needs redis-py: python3 -m pip install 'redis>=8'" >&2
  exit 2
fi
BIN=.build/release/allocation-engine
if [ ! -x "$BIN" ] || [ -n "${LAUNCH_BUILD:-}" ]; then
  swift build -c release --product allocation-engine
fi

port=$((20000 + RANDOM % 20000))
status=0
for s in $SCENARIOS; do
  case $s in
    hot-sellout) args=(--deals 1 --supply scarce) ;;
    hot-ample)   args=(--deals 1 --supply ample) ;;
    many)        args=(--deals 1000 --supply mixed --hot-share 0.2) ;;
    *) echo "unknown scenario $s" >&2; exit 2 ;;
  esac
  echo "== $s: $CLIENTS clients, $SECONDS_PER s, $CYCLES kill -9 cycles, data in $OUT/$s"
  rm -rf "$OUT/$s" "$OUT/$s".*
  if ! python3 Benchmarks/launch/drive.py --binary "$BIN" --data-dir "$OUT/$s" --port $port --seed "$SEED" \
      --clients "$CLIENTS" --seconds "$SECONDS_PER" --kill-cycles "$CYCLES" --verify-every 10 \
      --summary-json "$OUT/$s.summary.json" --selftest "${args[@]}" 2>&1 | tee "$OUT/$s.out"; then
    status=1
  fi
  grep -q '"ok": true' "$OUT/$s.summary.json" 2>/dev/null || status=1
  port=$((port + 1))
done
echo "== summaries in $OUT/*.summary.json; journals in $OUT/*.journal.jsonl"
python3 - "$OUT" $SCENARIOS <<'EOF'
import json, sys
out, names = sys.argv[1], sys.argv[2:]
tot = {"requests": 0, "replies": 0, "kill_cycles": 0, "checks": 0, "checks_failed": 0}
for n in names:
    try:
        s = json.load(open("%s/%s.summary.json" % (out, n)))
    except OSError:
        print("%-12s no summary (the driver failed)" % n); continue
    f = s["final"]
    print("%-12s %s  requests %d, answered %d, no reply %d, refused %d, holds %d, allocations %d, kill -9 cycles %d, checks %d (%d failed), refused while units remained %s, oversold %s"
          % (n, "ok  " if s["ok"] else "FAIL", s["requests"], s["replies"], s["no_reply"], f.get("refused_insufficient", 0),
             f.get("holds_known", 0), f.get("allocations_known", 0), s["kill_cycles"], s["checks"], s["checks_failed"],
             f.get("refused_while_units_remained"), f.get("oversold_placements")))
    for k in tot:
        tot[k] += s[k]
print("total        requests %(requests)d, answered %(replies)d, kill -9 cycles %(kill_cycles)d, checks %(checks)d, failed %(checks_failed)d" % tot)
EOF
exit $status
