#!/usr/bin/env python3
"""Failover under load, decided by Redis Sentinel (docs/replication.md).

One primary and two replicas of the engine (each under a supervisor that
restarts it when it exits, as systemd would), three redis-sentinel processes,
and clients placing holds through redis-py's Sentinel client with
--min-replicas-to-write 1. Then, ROUNDS times: kill -9 the primary mid-load;
Sentinel promotes a replica; the clients go on. Checks:

- every hold a client saw acknowledged is on the final primary (an
  independent record of acknowledged caller ids, each asked with HOLD.GET);
- no unit is sold twice: the lot's units = remaining + held + allocated
  (INVENTORY), and the acknowledged holds' units never exceed the lot;
- the killed primaries rejoin as replicas and converge to the primary's DIGEST;
- the time from each kill to the first acknowledged hold on the new primary.

Usage: python3 Tests/sentinel/failover.py [--rounds N] [--seconds S] [--prune-log]
Environment: ENGINE (the allocation-engine binary; default .build/release),
SENTINEL (redis-sentinel). Exit status 0 when every check passes.
"""
import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import redis
from redis.sentinel import Sentinel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENGINE = os.environ.get("ENGINE", os.path.join(ROOT, ".build", "release", "allocation-engine"))
SENTINEL = os.environ.get("SENTINEL", shutil.which("redis-sentinel") or "redis-sentinel")
DOWN_AFTER_MS = int(os.environ.get("DOWN_AFTER_MS", "2000"))
# A killed primary's machine comes back this much later (after the failover).
KILLED_DOWN_SECONDS = float(os.environ.get("KILLED_DOWN_SECONDS", "12"))
LOT_UNITS = 10_000_000
# With --prune-log every engine deletes the log its oldest kept snapshot
# covers, so a killed primary that rejoins (or a replica far behind) cannot
# follow from the log and copies the new primary's snapshot instead.
PRUNE_ARGS = ["--prune-log", "--snapshot-every-seconds", "2", "--segment-mb", "1", "--keep-snapshots", "2"]
SERVER_ARGS = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Supervised:
    """An engine process restarted whenever it exits, until stopped."""

    def __init__(self, name, port, data, extra):
        self.name, self.port, self.data, self.extra = name, port, data, extra
        self.proc = None
        self.stopping = False
        self.exits = []
        self.killed = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        first = True
        while not self.stopping:
            args = [ENGINE, "serve", "--data-dir", self.data, "--port", str(self.port),
                    "--min-replicas-to-write", "1", "--replica-ack-timeout-ms", "3000"] + SERVER_ARGS
            if first:
                args += self.extra
            first = False
            with open(os.path.join(self.data, "..", f"{self.name}.log"), "a") as out:
                with self.lock:
                    self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
                code = self.proc.wait()
            self.exits.append(code)
            if not self.stopping:
                # A kill -9 stands for the loss of the machine: it is back only later.
                time.sleep(KILLED_DOWN_SECONDS if self.killed else 0.3)
                self.killed = False

    def kill9(self):
        with self.lock:
            if self.proc and self.proc.poll() is None:
                self.killed = True
                self.proc.send_signal(signal.SIGKILL)

    def stop(self):
        self.stopping = True
        with self.lock:
            if self.proc and self.proc.poll() is None:
                self.proc.terminate()
        self.thread.join(timeout=20)


def wait_port(port, seconds=60):
    end = time.time() + seconds
    while time.time() < end:
        try:
            if redis.Redis(port=port, socket_timeout=1).ping():
                return True
        except redis.RedisError:
            time.sleep(0.1)
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("FAILOVER_ROUNDS", "2")))
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("FAILOVER_SECONDS", "4")),
                    help="load between kills")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--prune-log", action="store_true",
                    help="engines prune their logs (snapshots every 2 s, 1 MiB segments): rejoining engines copy a snapshot")
    args = ap.parse_args()
    if args.prune_log:
        SERVER_ARGS.extend(PRUNE_ARGS)

    work = tempfile.mkdtemp(prefix="failover-")
    ports = [free_port() for _ in range(3)]
    sports = [free_port() for _ in range(3)]
    engines, sentinels = [], []
    ok = True
    try:
        for i, p in enumerate(ports):
            d = os.path.join(work, f"e{i}")
            os.makedirs(d)
            extra = [] if i == 0 else ["--replicaof", f"127.0.0.1:{ports[0]}"]
            engines.append(Supervised(f"e{i}", p, d, extra))
        for p in ports:
            assert wait_port(p), f"engine on {p} did not start"
        r0 = redis.Redis(port=ports[0])
        deadline = time.time() + 20
        while time.time() < deadline and r0.info("replication").get("connected_slaves") != 2:
            time.sleep(0.1)
        r0.execute_command("DEAL.CREATE", "hot")
        r0.execute_command("LOT.ADD", "hot", "L1", str(LOT_UNITS), "10")
        for i, sp in enumerate(sports):
            conf = os.path.join(work, f"sentinel{i}.conf")
            with open(conf, "w") as f:
                f.write(f"port {sp}\nbind 127.0.0.1\ndir {work}\n"
                        f"sentinel monitor m 127.0.0.1 {ports[0]} 2\n"
                        f"sentinel down-after-milliseconds m {DOWN_AFTER_MS}\n"
                        f"sentinel failover-timeout m 10000\nsentinel parallel-syncs m 2\n")
            out = open(os.path.join(work, f"sentinel{i}.log"), "w")
            sentinels.append(subprocess.Popen([SENTINEL, conf], stdout=out, stderr=subprocess.STDOUT))
        time.sleep(3)
        sentinel = Sentinel([("127.0.0.1", sp) for sp in sports], socket_timeout=2)

        acked = {}  # caller id -> units
        acked_lock = threading.Lock()
        stop_load = threading.Event()
        first_ack_after = {}  # round -> time of first ack after the kill
        kill_time = {}
        current_round = [0]
        errors = {}

        def client(n):
            master = sentinel.master_for("m", socket_timeout=2, retry_on_timeout=False)
            seq = 0
            rng = random.Random(n)
            while not stop_load.is_set():
                seq += 1
                cid = f"c{n}-{seq}"
                units = rng.randint(1, 5)
                # Retry the same id until it has an answer: a retry never books twice.
                for _ in range(200):
                    if stop_load.is_set():
                        return
                    try:
                        sent = time.time()
                        master.execute_command("HOLD", "hot", f"inv{n}", str(units), "10", "TTL", "3600", "ID", cid)
                        with acked_lock:
                            acked[cid] = units
                            r = current_round[0]
                            # The first hold sent after the kill and acknowledged.
                            if r in kill_time and r not in first_ack_after and sent > kill_time[r]:
                                first_ack_after[r] = time.time()
                        break
                    except redis.ResponseError as e:
                        code = str(e).split(" ")[0]
                        errors[code] = errors.get(code, 0) + 1
                        time.sleep(0.05)
                    except (redis.ConnectionError, redis.TimeoutError, OSError):
                        errors["conn"] = errors.get("conn", 0) + 1
                        time.sleep(0.1)

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(args.clients)]
        for t in threads:
            t.start()
        time.sleep(args.seconds)
        for rnd in range(1, args.rounds + 1):
            host, port = sentinel.discover_master("m")
            victim = next(e for e in engines if e.port == port)
            with acked_lock:
                current_round[0] = rnd
                kill_time[rnd] = time.time()
                before = len(acked)
            log(f"round {rnd}: kill -9 primary {victim.name} on {port} ({before} holds acknowledged so far)")
            victim.kill9()
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    h, p = sentinel.discover_master("m")
                    if p != port:
                        break
                except Exception:
                    pass
                time.sleep(0.1)
            else:
                log("FAIL: Sentinel did not promote a replica within 60 s")
                ok = False
                break
            log(f"round {rnd}: Sentinel promoted the engine on {p}")
            deadline = time.time() + 60
            while time.time() < deadline:
                with acked_lock:
                    if rnd in first_ack_after:
                        break
                time.sleep(0.05)
            time.sleep(args.seconds)
            with acked_lock:
                t = first_ack_after.get(rnd)
            log(f"round {rnd}: first acknowledged hold {t - kill_time[rnd]:.2f} s after the kill" if t else f"round {rnd}: no hold acknowledged yet")
            if not t:
                ok = False
        stop_load.set()
        for t in threads:
            t.join(timeout=10)

        host, port = sentinel.discover_master("m")
        primary = redis.Redis(port=port, socket_timeout=10)
        # Reads wait until what they show is on a replica (--min-replicas-to-write 1):
        # first let a replica catch up with the final primary.
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if primary.execute_command("WAIT", "1", "1000") >= 1:
                    break
            except redis.RedisError:
                time.sleep(0.2)
        with acked_lock:
            ids = dict(acked)
        missing = []
        items = list(ids.items())
        for i in range(0, len(items), 500):
            chunk = items[i:i + 500]
            for attempt in range(20):
                try:
                    pipe = primary.pipeline(transaction=False)
                    for cid, _ in chunk:
                        pipe.execute_command("HOLD.GET", cid)
                    replies = pipe.execute(raise_on_error=False)
                    break
                except (redis.ConnectionError, redis.TimeoutError):
                    # A client killed by Sentinel's CLIENT KILL reconnects.
                    time.sleep(0.2)
            else:
                raise RuntimeError("the final primary did not answer HOLD.GET")
            for (cid, units), reply in zip(chunk, replies):
                if isinstance(reply, Exception):
                    missing.append((cid, str(reply)))
        log(f"{len(ids)} acknowledged holds, {len(missing)} missing on the final primary (errors seen by clients: {errors})")
        if missing:
            ok = False
            log(f"FAIL: missing {missing[:10]}")
        inv = primary.execute_command("INVENTORY", "hot")
        log(f"INVENTORY hot: {inv}")
        held = sum(ids.values())
        inv = {k.decode(): v.decode() for k, v in inv.items()}
        total, remaining = int(inv["units_total"]), int(inv["units_remaining"])
        in_holds, allocated = int(inv["units_held"]), int(inv["units_allocated"])
        # No unit sold twice: the lot adds up, and every acknowledged hold's units are held.
        if total != remaining + in_holds + allocated or held > in_holds or total != LOT_UNITS:
            ok = False
            log(f"FAIL: units do not add up: {inv}, {held} units acknowledged")
        # The killed primaries rejoin (Sentinel makes them replicas) and converge.
        deadline = time.time() + 60
        digests = {}
        while time.time() < deadline:
            digests = {}
            for e in engines:
                try:
                    digests[e.name] = redis.Redis(port=e.port, socket_timeout=2).execute_command("DIGEST")
                except redis.RedisError:
                    digests[e.name] = None
            if len(set(digests.values())) == 1 and None not in digests.values():
                break
            time.sleep(0.5)
        log(f"digests: {digests}; exits: {[(e.name, e.exits) for e in engines]}")
        # How the rejoining engines caught up (their own log lines).
        for e in engines:
            try:
                text = open(os.path.join(work, f"{e.name}.log")).read()
            except OSError:
                continue
            log(f"{e.name}: {text.count('log had parted from its primary')} divergences set aside, "
                f"{text.count('copied the primary' + chr(39) + 's snapshot')} snapshot copies")
        if len(set(digests.values())) != 1 or None in digests.values():
            ok = False
            log("FAIL: the engines did not converge to one DIGEST")
    finally:
        for s in sentinels:
            s.terminate()
        for e in engines:
            e.stop()
        if ok and not os.environ.get("KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"logs kept in {work}")
    log("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
