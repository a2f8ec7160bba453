#!/bin/bash
# The cost of replication on the hot-deal benchmark: one primary alone, a
# primary with one replica (min-replicas-to-write 0), and with the change
# acknowledged only once the replica has it (min-replicas-to-write 1).
# redis-benchmark -c 50, P1 and P16, HOLD on one hot deal, RUNS rounds each.
# Usage: Benchmarks/compare/replication-cost.sh [RUNS]   (needs a release build and redis-benchmark)
set -u
RUNS=${1:-3}
B=${ENGINE:-$(dirname "$0")/../../.build/release/allocation-engine}
N=${N:-200000}
waitp(){ for i in $(seq 200); do redis-cli -p $1 PING >/dev/null 2>&1 && return; sleep 0.1; done; echo "port $1 never up" >&2; exit 1; }
rps(){ redis-benchmark -p 7450 -c 50 -P $1 -n $2 -r 100000000 HOLD hot inv-__rand_int__ 1 28.5 TTL 3600 2>/dev/null | grep -o "throughput summary: [0-9.]*" | grep -o "[0-9.]*$"; }
run(){ # name min-replicas with-replica
  local name=$1 min=$2 rep=$3
  local dir=$(mktemp -d)
  mkdir -p $dir/p $dir/r
  $B serve --data-dir $dir/p --port 7450 --min-replicas-to-write $min > $dir/p.log 2>&1 &
  local pp=$!
  local rp=
  if [ $rep = 1 ]; then $B serve --data-dir $dir/r --port 7451 --replicaof 127.0.0.1:7450 > $dir/r.log 2>&1 & rp=$!; fi
  waitp 7450; [ $rep = 1 ] && waitp 7451
  sleep 1.5
  redis-cli -p 7450 DEAL.CREATE hot >/dev/null; redis-cli -p 7450 LOT.ADD hot L1 100000000 10 >/dev/null
  local p1=$(rps 1 $((N/4))) p16=$(rps 16 $N)
  echo "$name P1 $p1 P16 $p16"
  kill $pp $rp 2>/dev/null; wait $pp $rp 2>/dev/null
  rm -rf $dir
}
for i in $(seq $RUNS); do
  run alone 0 0
  run replica-async 0 1
  run replica-ack 1 1
done
