#!/usr/bin/env bash
# Side by side with Redis, same machine, same load generator (redis-benchmark):
#  1. the engine: durable HOLD (strict: fdatasync before the reply),
#  2. Redis 7 running a Lua reserve script (check remaining, decrement, record
#     the hold) with appendfsync always (fsync before the reply),
#  3. PING on both, for the network floor.
# Needs redis-server and redis-benchmark (apt-get install redis-server redis-tools)
# and a release build (swift build -c release). Ports 7391/7392; data in a temp dir.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-200000}
CLIENTS=${CLIENTS:-50}
WORK=$(mktemp -d)
ENGINE=.build/release/allocation-engine
cleanup() { kill $(jobs -p) 2>/dev/null || true; sleep 0.5; rm -rf "$WORK"; }
trap cleanup EXIT

"$ENGINE" serve --data-dir "$WORK/engine" --port 7391 2>"$WORK/engine.log" &
redis-server --port 7392 --dir "$WORK" --appendonly yes --appendfsync always --save "" --daemonize no >"$WORK/redis.log" 2>&1 &
sleep 1.5

redis-cli -p 7391 DEAL.CREATE hot >/dev/null
redis-cli -p 7391 LOT.ADD hot lot-a 1000000000 20 >/dev/null
redis-cli -p 7392 SET lot:remaining 1000000000 >/dev/null
# KEYS[1] = lot remaining counter; ARGV = investor, units, price. All-or-nothing.
SHA=$(redis-cli -p 7392 SCRIPT LOAD "local r = tonumber(redis.call('GET', KEYS[1])); local u = tonumber(ARGV[2]); if r < u then return redis.error_reply('INSUFFICIENT') end; redis.call('DECRBY', KEYS[1], u); local id = redis.call('INCR', 'hold:seq'); redis.call('HSET', 'hold:' .. id, 'investor', ARGV[1], 'units', ARGV[2], 'price', ARGV[3], 'status', 'pending'); return id")

run() { # label, port, pipeline, command...
  local label=$1 port=$2 pipe=$3; shift 3
  local line
  line=$(redis-benchmark -p "$port" -c "$CLIENTS" -n "$N" -P "$pipe" -q "$@" 2>/dev/null | tr '\r' '\n' | grep "requests per second" | tail -1)
  printf '%-48s %s\n' "$label (P=$pipe)" "$line"
}
for P in 1 16; do
  run "engine  HOLD, strict durability" 7391 "$P" HOLD hot inv-1 1 25
  run "redis   Lua reserve, appendfsync always" 7392 "$P" EVALSHA "$SHA" 1 lot:remaining inv-1 1 25
done
run "engine  PING" 7391 1 PING
run "redis   PING" 7392 1 PING
echo
echo "engine inventory after the run (invariant: total = remaining + held + allocated):"
redis-cli -p 7391 INVENTORY hot | paste - - | head -6
