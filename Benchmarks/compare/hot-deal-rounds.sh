#!/usr/bin/env bash
# One round of the hot-deal runs used for before/after comparisons in
# docs/benchmarks.md: a fresh `serve` (strict) of the checkout in DIR, one deal
# with 8 lots, redis-benchmark HOLD unpipelined and 16 pipelined, PING, then
# `engine-bench --only hot`. Build first: (cd DIR && swift build -c release).
# Alternate two checkouts, in both orders, several rounds:
#   for i in 1 2 3; do bash hot-deal-rounds.sh ../old before; bash hot-deal-rounds.sh . after; done
set -u
DIR=${1:?usage: hot-deal-rounds.sh <checkout dir> <label>}; L=${2:-run}; PORT=${PORT:-7395}
BIN=$DIR/.build/release/allocation-engine
DATA=$(mktemp -d)
"$BIN" serve --data-dir "$DATA" --port "$PORT" > "$DATA.log" 2>&1 &
PID=$!
sleep 1.5
redis-cli -p "$PORT" DEAL.CREATE hot >/dev/null
for i in 1 2 3 4 5 6 7 8; do redis-cli -p "$PORT" LOT.ADD hot "lot-$i" 100000000 20 >/dev/null; done
rate() { tr '\r' '\n' | grep -o "[0-9.]* requests per second" | tail -1; }
P1=$(redis-benchmark -p "$PORT" -c 50 -n 200000 -r 1000000 -q HOLD hot inv-__rand_int__ 5 28.5 TTL 86400 | rate)
P16=$(redis-benchmark -p "$PORT" -c 50 -n 1000000 -P 16 -r 1000000 -q HOLD hot inv-__rand_int__ 5 28.5 TTL 86400 | rate)
PING=$(redis-benchmark -p "$PORT" -c 50 -n 200000 -q -t ping_mbulk | rate)
kill "$PID"; wait "$PID" 2>/dev/null
rm -rf "$DATA" "$DATA.log"
HOT=$("$DIR/.build/release/engine-bench" --only hot 2>&1 | grep "64 callers" | awk '{print $NF}' | tr '\n' ' ')
echo "$L redis-benchmark P1: $P1 | P16: $P16 | PING: $PING | engine-bench hot 64 callers: $HOT"
