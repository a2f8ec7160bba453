#!/usr/bin/env python3
"""The side-by-side comparison (issue 11): the same work against PostgreSQL
(the seed's schema and fn_reserve_inventory, SKIP LOCKED and plain FOR UPDATE,
pgbench), Redis (Lua scripts doing what the engine does, appendfsync always,
redis-benchmark and the project's load generator) and AllocationEngine
(strict, the same two load generators). Checks every system's final state for
oversell after every run, and writes one JSON file, one Markdown table and an
SVG chart. Started by run.sh (which installs what is missing and builds).

Environment: COMPARE_QUICK=1 (a CI-sized run), COMPARE_ROUNDS (default 3, quick 1),
COMPARE_OUT (output directory, default Benchmarks/compare/results).
No Python packages needed: a small RESP client is below.
"""

import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.join(ROOT, "Benchmarks", "compare")
ENGINE = os.path.join(ROOT, ".build", "release", "allocation-engine")
LOADGEN = os.path.join(ROOT, ".build", "release", "engine-bench")
QUICK = os.environ.get("COMPARE_QUICK", "") not in ("", "0")
ROUNDS = int(os.environ.get("COMPARE_ROUNDS", "1" if QUICK else "3"))
OUT = os.environ.get("COMPARE_OUT", os.path.join(HERE, "results"))
PORTS = {"engine": 7391, "redis": 7392, "postgres": 7393}

# Sizes. The hot launch and 1,000-deal runs are long enough for a rate, the
# sell-out is a fixed demand: 10x the supply, in requests of SELL_UNITS.
PG_SECONDS = 2 if QUICK else 8
NB_SECONDS = 1.5 if QUICK else 5.0
RB_REQUESTS = {1: 10_000, 16: 40_000} if QUICK else {1: 40_000, 16: 160_000}
CONCURRENCY = [16, 64]
PIPELINES = [1, 16]
HOT_LOTS, HOT_LOT_UNITS = 8, 10_000_000      # 80M units a run: never runs out
HOLD_UNITS = 5
SELL_SUPPLY = 10_000 if QUICK else 100_000
SELL_LOTS = 8
SELL_UNITS = 100
MANY_DEALS, MANY_LOT_UNITS = 1000, 1_000_000
PRICE = "28.5"
SCALE = 100_000_000  # 1e-8 units, the engine's fixed point (and the Redis scripts')


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- RESP client

class RESPError(Exception):
    pass


class RESP:
    """Enough of the Redis protocol for setup and checks (not for load)."""

    def __init__(self, port, timeout=120):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RESPError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise ConnectionError("unexpected reply %r" % line)

    def pipeline(self, commands):
        out = []
        for start in range(0, len(commands), 1000):
            chunk = commands[start:start + 1000]
            payload = b"".join(encode(c) for c in chunk)
            self.sock.sendall(payload)
            out.extend(self._reply() for _ in chunk)
        return out

    def call(self, *args):
        r = self.pipeline([args])[0]
        if isinstance(r, RESPError):
            raise r
        return r


def encode(args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(parts)


def wait_port(port, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            RESP(port, timeout=2).call("PING")
            return
        except (OSError, RESPError):
            time.sleep(0.2)
    raise RuntimeError("nothing answers PING on port %d" % port)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


# ---------------------------------------------------------------- the systems

class Engine:
    name = "engine"

    def __init__(self, work):
        self.work = work
        self.port = PORTS["engine"]
        self.proc = None
        self.count = 0

    def start(self):
        self.count += 1
        self.dir = os.path.join(self.work, "engine-%d" % self.count)
        self.logf = open(self.dir + ".log", "w")
        # strict (the default): a change is answered after the fdatasync covering it.
        self.proc = subprocess.Popen([ENGINE, "serve", "--data-dir", self.dir, "--port", str(self.port),
                                      "--durability", "strict"], stdout=self.logf, stderr=subprocess.STDOUT)
        wait_port(self.port)
        self.c = RESP(self.port)

    def stop_and_verify(self):
        """Stops the server and runs `allocation-engine verify` on its data
        directory: every snapshot and log segment checked, the whole log
        replayed, the invariants of every lot rechecked from the rows."""
        self.proc.terminate()
        self.proc.wait(timeout=120)
        self.logf.close()
        r = subprocess.run([ENGINE, "verify", self.dir], capture_output=True, text=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        ok = r.returncode == 0
        if not ok:
            log("engine verify FAILED:", r.stdout[-2000:], r.stderr[-2000:])
        return ok

    def create_deal(self, deal, lots, units):
        cmds = [("DEAL.CREATE", deal)]
        cmds += [("LOT.ADD", deal, "%s-l%d" % (deal, i), units, 20, "ACQUIRED", "2024-01-%02d" % (i + 1))
                 for i in range(lots)]
        for r in self.c.pipeline(cmds):
            if isinstance(r, RESPError):
                raise r

    def check(self, deals, expect_units=None):
        """Oversell check from INVENTORY: every lot total = remaining + held +
        allocated, nothing negative; sold (held + allocated) over the deals
        compared with what the load generator saw acknowledged."""
        replies = self.c.pipeline([("INVENTORY", d) for d in deals])
        broken, sold, remaining = 0, 0, 0
        for r in replies:
            if isinstance(r, RESPError):
                raise r
            row = dict(zip(r[0::2], r[1::2]))
            for k, v in row.items():
                if not k.startswith("lot:"):
                    continue
                f = dict(p.split("=") for p in v.split())
                t, rem, h, a = (to_raw(f[x]) for x in ("total", "remaining", "held", "allocated"))
                if rem < 0 or h < 0 or a < 0 or t != rem + h + a:
                    broken += 1
                sold += h + a
                remaining += rem
        return check_result(broken, sold, remaining, expect_units)


class Redis:
    name = "redis"

    def __init__(self, work):
        self.work = work
        self.port = PORTS["redis"]
        self.count = 0
        self.sha = {}

    def start(self):
        self.count += 1
        self.dir = os.path.join(self.work, "redis-%d" % self.count)
        os.makedirs(self.dir)
        self.logf = open(self.dir + ".log", "w")
        # Every write fsynced before the reply (appendfsync always); no RDB
        # snapshots and no AOF rewrite during the runs.
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--dir", self.dir, "--appendonly", "yes", "--appendfsync", "always",
                                      "--save", "", "--auto-aof-rewrite-percentage", "0",
                                      "--maxclients", "1000", "--daemonize", "no"],
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        wait_port(self.port)
        self.c = RESP(self.port)
        for name in ("reserve", "allocate", "approve", "check", "counter"):
            with open(os.path.join(HERE, "redis", name + ".lua")) as f:
                self.sha[name] = self.c.call("SCRIPT", "LOAD", f.read())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.logf.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def create_deal(self, deal, lots, units):
        ids = ["%s-l%d" % (deal, i) for i in range(lots)]
        raw = units * SCALE
        cmds = [("HSET", deal + ":deal", "status", "open"), ("RPUSH", deal + ":lots", *ids)]
        for key, value in ((":rem", raw), (":total", raw), (":held", 0), (":alloc", 0)):
            cmds.append(("HSET", deal + key, *[x for i in ids for x in (i, value)]))
        for r in self.c.pipeline(cmds):
            if isinstance(r, RESPError):
                raise r

    def check(self, deals, expect_units=None):
        """Oversell check: per lot, total = remaining + held + allocated with
        held and allocated recounted from the hold rows (check.lua), and the
        scripts' own counters equal to the recount; nothing negative."""
        broken, sold, remaining = 0, 0, 0
        for d in deals:
            total = hash_ints(self.c.call("HGETALL", d + ":total"))
            rem = hash_ints(self.c.call("HGETALL", d + ":rem"))
            held = hash_ints(self.c.call("HGETALL", d + ":held"))
            alloc = hash_ints(self.c.call("HGETALL", d + ":alloc"))
            n = self.c.call("LLEN", d + ":holds")
            rh, ra = {}, {}
            for start in range(0, n, 20000):
                r = self.c.call("EVALSHA", self.sha["check"], 1, d, start, 20000)
                for lot, h, a in zip(r[0::3], r[1::3], r[2::3]):
                    rh[lot] = rh.get(lot, 0) + int(h)
                    ra[lot] = ra.get(lot, 0) + int(a)
            for lot, t in total.items():
                h, a, r_ = rh.get(lot, 0), ra.get(lot, 0), rem.get(lot, 0)
                if r_ < 0 or t != r_ + h + a or held.get(lot, 0) != h or alloc.get(lot, 0) != a:
                    broken += 1
                sold += h + a
                remaining += r_
        return check_result(broken, sold, remaining, expect_units)


class Postgres:
    name = "postgres"

    def __init__(self, work):
        self.work = work
        self.port = PORTS["postgres"]
        self.bin = sorted(d for d in (os.path.join("/usr/lib/postgresql", v, "bin")
                                      for v in os.listdir("/usr/lib/postgresql")) if os.path.isdir(d))[-1]
        self.dir = os.path.join(work, "pg")
        self.as_postgres = os.geteuid() == 0

    def sh(self, argv, **kw):
        if self.as_postgres:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        return run(argv, **kw)

    def start(self):
        if self.as_postgres:
            shutil.chown(self.work, "postgres")
        self.sh([self.bin + "/initdb", "-D", self.dir, "-A", "trust", "-U", "postgres"])
        opts = ("-p %d -k %s -c listen_addresses=127.0.0.1 -c synchronous_commit=on -c fsync=on "
                "-c max_connections=200 -c shared_buffers=512MB -c max_wal_size=4GB "
                "-c checkpoint_timeout=30min" % (self.port, self.work))
        self.sh([self.bin + "/pg_ctl", "-D", self.dir, "-o", opts, "-l", self.dir + ".log", "-w", "start"])
        for f in ("schema.sql", "functions.sql", "bench.sql"):
            self.psql_file(os.path.join(HERE, "postgres", f))
        self.sql("insert into vehicles (id, name, type) values (bench_uuid(4, 1), 'bench vehicle', 'spv');"
                 "insert into investors (id, legal_name) select bench_uuid(2, i), 'investor ' || i "
                 "from generate_series(1, 1000) i;")

    def stop(self):
        try:
            self.sh([self.bin + "/pg_ctl", "-D", self.dir, "-m", "fast", "stop"])
        except subprocess.CalledProcessError:
            pass

    def psql_file(self, path):
        with open(path) as f:
            self.sql(f.read())

    def sql(self, text):
        r = self.sh([self.bin + "/psql", "-h", self.work, "-p", str(self.port), "-U", "postgres", "-X", "-q",
                     "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1", "-f", "-"], input=text)
        return r.stdout.strip()

    def version(self):
        return self.sh([self.bin + "/postgres", "--version"]).stdout.strip()

    def reset(self, deals):
        """Empty tables, fresh deals, a checkpoint: each run starts alike."""
        self.sql("truncate bench_refusals, allocation_lot_items, allocations, reservation_lot_items, "
                 "reservations, positions, share_lots, deals cascade;"
                 + "".join("select bench_deal(%d, %d, %d);" % d for d in deals)
                 + "vacuum analyze; checkpoint;")

    def pgbench(self, script, clients, seconds=None, transactions=None, variables=()):
        path = os.path.join(self.work, "script-%d.sql" % abs(hash(script)))
        with open(path, "w") as f:
            f.write(script)
        if self.as_postgres:
            shutil.chown(path, "postgres")
        argv = [self.bin + "/pgbench", "-h", self.work, "-p", str(self.port), "-U", "postgres", "-n",
                "-M", "prepared", "-c", str(clients), "-j", "2", "-f", path]
        argv += ["-T", str(seconds)] if seconds else ["-t", str(transactions)]
        for k, v in variables:
            argv += ["-D", "%s=%s" % (k, v)]
        argv.append("postgres")
        t0 = time.time()
        r = self.sh(argv)
        wall = time.time() - t0
        out = r.stdout
        tps = float(out.split("tps = ")[1].split()[0])
        processed = int(out.split("number of transactions actually processed: ")[1].split("/")[0].split()[0])
        failed = out.split("number of failed transactions: ")
        failed = int(failed[1].split()[0]) if len(failed) > 1 else 0
        lat = out.split("latency average = ")
        latency = float(lat[1].split()[0]) if len(lat) > 1 else None
        return {"tps": tps, "transactions": processed, "failed": failed, "latency_avg_ms": latency, "wall_s": wall}

    def check(self, deal_numbers):
        """Oversell check from the rows: per lot, total = remaining + the units
        of the lot items of live reservations; every reservation's items add up
        to its units; every allocation's items to its units; nothing negative."""
        ds = ",".join("bench_uuid(1, %d)" % d for d in deal_numbers)
        q = """
        with items as (
          select ri.lot_id, sum(ri.units) as u from reservation_lot_items ri
            join reservations r on r.id = ri.reservation_id
           where r.status in ('pending', 'approved') group by ri.lot_id)
        select count(*) filter (where l.units_remaining < 0 or l.units_total <> l.units_remaining + coalesce(i.u, 0)),
               coalesce(sum(l.units_total - l.units_remaining), 0), coalesce(sum(l.units_remaining), 0),
               (select count(*) from reservations r where r.deal_id in (%(ds)s) and r.requested_units <>
                  (select coalesce(sum(units), 0) from reservation_lot_items where reservation_id = r.id)),
               (select count(*) from allocations a where a.deal_id in (%(ds)s) and a.units <>
                  (select coalesce(sum(units), 0) from allocation_lot_items where allocation_id = a.id)),
               (select count(*) from reservations where deal_id in (%(ds)s))
          from share_lots l left join items i on i.lot_id = l.id where l.deal_id in (%(ds)s);
        """ % {"ds": ds}
        broken, sold, remaining, bad_res, bad_alloc, reservations = self.sql(q).split("|")
        res = check_result(int(broken) + int(bad_res) + int(bad_alloc), to_raw(sold), to_raw(remaining), None)
        res["reservations"] = int(reservations)
        return res

    def sellout_figures(self, deal):
        q = """
        select (select count(*) from reservations where deal_id = bench_uuid(1, %(d)d)),
               (select count(*) from bench_refusals where deal_id = bench_uuid(1, %(d)d)),
               (select count(*) from bench_refusals f where deal_id = bench_uuid(1, %(d)d)
                  and f.at < (select max(created_at) from reservations where deal_id = bench_uuid(1, %(d)d))),
               extract(epoch from (select max(created_at) from reservations where deal_id = bench_uuid(1, %(d)d))
                 - least((select min(created_at) from reservations where deal_id = bench_uuid(1, %(d)d)),
                         (select min(at) from bench_refusals where deal_id = bench_uuid(1, %(d)d))));
        """ % {"d": deal}
        ok, refused, while_available, span = self.sql(q).split("|")
        return int(ok), int(refused), int(while_available), float(span or 0)


def to_raw(text):
    """A decimal string ('12.5') as an integer of 1e-8 units, exactly."""
    text = str(text)
    neg = text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    v = int(whole or "0") * SCALE + int((frac + "0" * 8)[:8] or "0")
    return -v if neg else v


def hash_ints(flat):
    return {k: int(v) for k, v in zip(flat[0::2], flat[1::2])}


def check_result(broken, sold, remaining, expect_units):
    r = {"lots_broken": broken, "sold_units": sold / SCALE, "remaining_units": remaining / SCALE,
         "oversell": broken > 0}
    if expect_units is not None:
        r["acknowledged_units"] = expect_units / SCALE
        r["matches_acknowledged"] = sold == expect_units
    r["ok"] = broken == 0 and r.get("matches_acknowledged", True)
    return r


# ---------------------------------------------------------------- load generators

# redis-benchmark reads -r with atoi into an int and treats anything negative
# as 0 (no randomization): 10**12 overflowed and silently sent one id 10,000
# times. 2e9 fits, and 40,000 draws from it repeat with probability ~0.0004.
RB_KEYSPACE = 2_000_000_000


def redis_benchmark(port, clients, pipeline, requests, args, keyspace=None):
    if keyspace is not None and not 0 < keyspace < 2 ** 31:
        raise ValueError("redis-benchmark -r must fit a C int: %r" % keyspace)
    argv = ["redis-benchmark", "-p", str(port), "-c", str(clients), "-n", str(requests), "-P", str(pipeline),
            "--csv"]
    if keyspace:
        argv += ["-r", str(keyspace)]
    r = run(argv + [str(a) for a in args])
    rows = [l for l in r.stdout.splitlines() if l.startswith('"') and not l.startswith('"test"')]
    cells = [c.strip('"') for c in rows[-1].split(",")]
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    return {"rate": float(cells[1]), "p50_ms": float(cells[4]), "p99_ms": float(cells[6]), "requests": requests}


def netbench(port, clients, pipeline, cycle, seconds=None, cycles=None, variants=1):
    argv = [LOADGEN, "--load", "--port", str(port), "--connections", str(clients), "--pipeline", str(pipeline),
            "--seconds", str(seconds or 600), "--variants", str(variants)]
    if cycles:
        argv += ["--cycles", str(cycles)]
    words = []
    for i, command in enumerate(cycle):
        if i:
            words.append(";")
        words += [str(a) for a in command]
    r = json.loads(run(argv + ["--"] + words).stdout)
    r["rate"] = r["cycles_per_s"]
    return r


# ---------------------------------------------------------------- workloads

class Bench:
    def __init__(self, work):
        self.work = work
        self.engine = Engine(work)
        self.redis = Redis(work)
        self.pg = Postgres(work)
        self.runs = []
        self.tag = 0
        self.checks_ok = True

    def next_tag(self):
        self.tag += 1
        return "r%d" % self.tag

    def record(self, workload, system, driver, clients, pipeline, rnd, result, check):
        row = {"workload": workload, "system": system, "driver": driver, "clients": clients,
               "pipeline": pipeline, "round": rnd, "check": check}
        row.update(result)
        self.runs.append(row)
        if not check.get("ok", False):
            self.checks_ok = False
        log("  %-9s %-26s %-16s c=%-3d P=%-3d %12.1f/s  %s" % (
            workload, system, driver, clients, pipeline, result.get("rate", 0),
            "ok" if check.get("ok") else "CHECK FAILED %s" % check))

    # --- hot launch: one deal, 8 lots, supply never runs out -----------------
    def hot(self, rnd):
        units_raw = HOLD_UNITS * SCALE
        for sysobj in (self.engine, self.redis):
            sysobj.start()
            for clients in CONCURRENCY:
                for pipeline in PIPELINES:
                    for driver in ("redis-benchmark", "engine-bench"):
                        tag = self.next_tag()
                        deal = "hot-" + tag
                        sysobj.create_deal(deal, HOT_LOTS, HOT_LOT_UNITS)
                        if sysobj is self.engine:
                            cmd = ["HOLD", deal, "inv-1", HOLD_UNITS, PRICE, "TTL", 86400, "ID"]
                        else:
                            cmd = ["EVALSHA", self.redis.sha["reserve"], 2, deal, None, "inv-1",
                                   units_raw, 28_500_000, 86400, 0]
                        if driver == "redis-benchmark":
                            args = fill(cmd, tag + "-__rand_int__")
                            r = redis_benchmark(sysobj.port, clients, pipeline, RB_REQUESTS[pipeline], args,
                                                keyspace=RB_KEYSPACE)
                            check = sysobj.check([deal])
                            # Random ids may repeat (rarely): a repeat is an idempotent
                            # retry, answered without a write. More than 1 % of them
                            # means the run measured retries, not holds: not a result.
                            check["holds_vs_requests"] = check["sold_units"] / HOLD_UNITS / r["requests"]
                            check["ok"] = check["ok"] and check["holds_vs_requests"] >= 0.99
                        else:
                            r = netbench(sysobj.port, clients, pipeline, [fill(cmd, tag + "-__seq__")],
                                         seconds=NB_SECONDS)
                            check = sysobj.check([deal], expect_units=(r["replies"] - r["errors"]) * units_raw)
                            check["errors"] = r["errors"]
                        check["ok"] = check["ok"] and check["remaining_units"] > 0
                        self.record("hot", sysobj.name, driver, clients, pipeline, rnd, r, check)
            if sysobj is self.redis:
                # The lower bound: today's counter script (less work than a hold).
                for pipeline in PIPELINES:
                    key = "counter-" + self.next_tag()
                    self.redis.c.call("SET", key, 10 ** 12)
                    r = redis_benchmark(self.redis.port, 64, pipeline, RB_REQUESTS[pipeline],
                                        ["EVALSHA", self.redis.sha["counter"], 1, key, "inv-1", 5, 25])
                    left = int(self.redis.c.call("GET", key))
                    holds = int(self.redis.c.call("GET", "hold:seq") or 0)
                    check = {"ok": left >= 0, "remaining": left, "oversell": left < 0}
                    self.redis.c.call("DEL", "hold:seq")
                    self.record("hot", "redis-counter (lower bound)", "redis-benchmark", 64, pipeline, rnd, r, check)
                self.redis.stop()
            else:
                ok = self.engine.stop_and_verify()
                self.record_verify("hot", rnd, ok)
        for variant, skip in (("postgres-skip-locked", 1), ("postgres-for-update", 0)):
            for clients in CONCURRENCY:
                self.pg.reset([(1, HOT_LOTS, HOT_LOT_UNITS)])
                script = ("\\set i random(1, 1000)\n"
                          "SELECT bench_reserve(1, :i, %d, %s, %d);\n" % (HOLD_UNITS, PRICE, skip))
                r = self.pg.pgbench(script, clients, seconds=PG_SECONDS)
                check = self.pg.check([1])
                ok, refused, while_available, _ = self.pg.sellout_figures(1)
                # pgbench's tps counts refused calls too: the rate is of reservations made
                r.update({"rate": r["tps"] * ok / max(1, r["transactions"]),
                          "successes": ok, "refusals": refused, "refusals_while_available": while_available})
                check["ok"] = check["ok"] and check["reservations"] == ok
                self.record("hot", variant, "pgbench", clients, 1, rnd, r, check)

    def record_verify(self, workload, rnd, ok):
        self.runs.append({"workload": workload, "system": "engine", "driver": "allocation-engine verify",
                          "round": rnd, "check": {"ok": ok}})
        if not ok:
            self.checks_ok = False
        log("  %-9s engine verify after the runs: %s" % (workload, "ok" if ok else "FAILED"))

    # --- 1,000 deals ----------------------------------------------------------
    def many(self, rnd):
        units_raw = HOLD_UNITS * SCALE
        for sysobj in (self.engine, self.redis):
            sysobj.start()
            for clients in CONCURRENCY:
                for pipeline in PIPELINES:
                    for driver in ("redis-benchmark", "engine-bench"):
                        tag = self.next_tag()
                        deals = ["m%s-%012d" % (tag, i) for i in range(MANY_DEALS)]
                        for d in deals:
                            sysobj.create_deal(d, 1, MANY_LOT_UNITS)
                        # generated hold ids here: redis-benchmark has one random
                        # range for all placeholders (the deal takes it)
                        if sysobj is self.engine:
                            cmd = ["HOLD", "m%s-@" % tag, "inv-1", HOLD_UNITS, PRICE, "TTL", 86400]
                        else:
                            cmd = ["EVALSHA", self.redis.sha["reserve"], 2, "m%s-@" % tag, "", "inv-1",
                                   units_raw, 28_500_000, 86400, 0]
                        if driver == "redis-benchmark":
                            args = [str(a).replace("@", "__rand_int__") for a in cmd]
                            r = redis_benchmark(sysobj.port, clients, pipeline, RB_REQUESTS[pipeline], args,
                                                keyspace=MANY_DEALS)
                            check = sysobj.check(deals, expect_units=r["requests"] * units_raw)
                        else:
                            args = [str(a).replace("@", "__i__") for a in cmd]
                            r = netbench(sysobj.port, clients, pipeline, [args], seconds=NB_SECONDS,
                                         variants=MANY_DEALS)
                            check = sysobj.check(deals, expect_units=(r["replies"] - r["errors"]) * units_raw)
                        self.record("1000deals", sysobj.name, driver, clients, pipeline, rnd, r, check)
            if sysobj is self.redis:
                self.redis.stop()
            else:
                self.record_verify("1000deals", rnd, self.engine.stop_and_verify())
        for variant, skip in (("postgres-skip-locked", 1), ("postgres-for-update", 0)):
            for clients in CONCURRENCY:
                self.pg.reset([(1000 + d, 1, MANY_LOT_UNITS) for d in range(1, MANY_DEALS + 1)])
                script = ("\\set i random(1, 1000)\n\\set d random(1001, %d)\n"
                          "SELECT bench_reserve(:d, :i, %d, %s, %d);\n" % (1000 + MANY_DEALS, HOLD_UNITS, PRICE, skip))
                r = self.pg.pgbench(script, clients, seconds=PG_SECONDS)
                check = self.pg.check(range(1001, 1001 + MANY_DEALS))
                refused = int(self.pg.sql("select count(*) from bench_refusals"))
                r.update({"rate": r["tps"] * check["reservations"] / max(1, r["transactions"]),
                          "successes": check["reservations"], "refusals": refused})
                self.record("1000deals", variant, "pgbench", clients, 1, rnd, r, check)

    # --- sell-out: 100,000 units, demand ten times that -------------------------
    def sellout(self, rnd):
        lot_units = SELL_SUPPLY // SELL_LOTS
        unit_raw = SELL_UNITS * SCALE
        for sysobj in (self.engine, self.redis):
            sysobj.start()
            for clients in CONCURRENCY:
                demand = -(-10 * SELL_SUPPLY // SELL_UNITS // clients) * clients
                for pipeline in PIPELINES:
                    tag = self.next_tag()
                    deal = "sell-" + tag
                    sysobj.create_deal(deal, SELL_LOTS, lot_units)
                    if sysobj is self.engine:
                        cmd = ["HOLD", deal, "inv-1", SELL_UNITS, PRICE, "TTL", 86400, "ID", tag + "-__seq__"]
                    else:
                        cmd = ["EVALSHA", self.redis.sha["reserve"], 2, deal, tag + "-__seq__", "inv-1",
                               unit_raw, 28_500_000, 86400, 0]
                    r = netbench(sysobj.port, clients, pipeline, [cmd], cycles=demand)
                    ok = r["replies"] - r["errors"]
                    check = sysobj.check([deal], expect_units=ok * unit_raw)
                    r.update({"demand_requests": demand, "successes": ok, "time_to_sell_out_s": r["last_success_s"],
                              "sold_out": check["remaining_units"] == 0, "rate": r["replies_per_s"]})
                    check["ok"] = check["ok"] and r["errors"] == r["refusals"]
                    self.record("sellout", sysobj.name, "engine-bench", clients, pipeline, rnd, r, check)
            if sysobj is self.redis:
                self.redis.stop()
            else:
                self.record_verify("sellout", rnd, self.engine.stop_and_verify())
        for variant, skip in (("postgres-skip-locked", 1), ("postgres-for-update", 0)):
            for clients in CONCURRENCY:
                per_client = -(-10 * SELL_SUPPLY // SELL_UNITS // clients)
                self.pg.reset([(2, SELL_LOTS, lot_units)])
                script = ("\\set i random(1, 1000)\n"
                          "SELECT bench_reserve(2, :i, %d, %s, %d);\n" % (SELL_UNITS, PRICE, skip))
                r = self.pg.pgbench(script, clients, transactions=per_client)
                check = self.pg.check([2])
                ok, refused, while_available, span = self.pg.sellout_figures(2)
                if check["remaining_units"] >= SELL_UNITS:
                    # never sold out: every refusal came while a request's units remained
                    while_available = refused
                r.update({"demand_requests": per_client * clients, "successes": ok, "refusals": refused,
                          "refusals_while_available": while_available, "time_to_sell_out_s": span,
                          "sold_out": check["remaining_units"] == 0, "rate": r["tps"]})
                check["ok"] = check["ok"] and check["reservations"] == ok and ok + refused == per_client * clients
                self.record("sellout", variant, "pgbench", clients, 1, rnd, r, check)

    # --- the full cycle: hold -> allocate -> approve ---------------------------
    def cycle(self, rnd):
        units_raw = HOLD_UNITS * SCALE
        for sysobj in (self.engine, self.redis):
            sysobj.start()
            for clients in CONCURRENCY:
                for pipeline in PIPELINES:
                    tag = self.next_tag()
                    deal = "cyc-" + tag
                    sysobj.create_deal(deal, HOT_LOTS, HOT_LOT_UNITS)
                    h, a = "h" + tag + "-__seq__", "a" + tag + "-__seq__"
                    if sysobj is self.engine:
                        cyc = [["HOLD", deal, "inv-1", HOLD_UNITS, PRICE, "TTL", 86400, "ID", h],
                               ["ALLOCATE", h, "ID", a], ["APPROVE", a]]
                    else:
                        s = self.redis.sha
                        cyc = [["EVALSHA", s["reserve"], 2, deal, h, "inv-1", units_raw, 28_500_000, 86400, 0],
                               ["EVALSHA", s["allocate"], 2, h, a], ["EVALSHA", s["approve"], 1, a]]
                    r = netbench(sysobj.port, clients, pipeline, cyc, seconds=NB_SECONDS)
                    check = sysobj.check([deal], expect_units=r["cycles"] * units_raw)
                    check["ok"] = check["ok"] and r["errors"] == 0
                    self.record("cycle", sysobj.name, "engine-bench", clients, pipeline, rnd, r, check)
            if sysobj is self.redis:
                self.redis.stop()
            else:
                self.record_verify("cycle", rnd, self.engine.stop_and_verify())
        for variant, skip in (("postgres-skip-locked", 1), ("postgres-for-update", 0)):
            for clients in CONCURRENCY:
                self.pg.reset([(1, HOT_LOTS, HOT_LOT_UNITS)])
                script = ("\\set i random(1, 1000)\n"
                          "SELECT (r IS NOT NULL)::int AS ok, coalesce(r::text, '') AS rid "
                          "FROM bench_reserve(1, :i, %d, %s, %d) AS r \\gset\n"
                          "\\if :ok\n"
                          "SELECT fn_finalize_allocation(:rid) AS aid \\gset\n"
                          "SELECT fn_approve_allocation(:aid);\n"
                          "\\endif\n" % (HOLD_UNITS, PRICE, skip))
                r = self.pg.pgbench(script, clients, seconds=PG_SECONDS)
                check = self.pg.check([1])
                counts = self.pg.sql("select (select count(*) from allocations where status = 'approved'), "
                                     "(select count(*) from bench_refusals)").split("|")
                approved, refused = int(counts[0]), int(counts[1])
                r.update({"rate": r["tps"] * approved / max(1, r["transactions"]), "cycles": approved,
                          "refusals": refused})
                check["ok"] = check["ok"] and approved == check["reservations"]
                self.record("cycle", variant, "pgbench", clients, 1, rnd, r, check)


def fill(cmd, value):
    """The command with its hold-id slot (None, or a trailing 'ID') filled."""
    out = [value if a is None else a for a in cmd]
    if out and out[-1] == "ID":
        out.append(value)
    return out


# ---------------------------------------------------------------- machine and report

def machine():
    def cmd(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""
    model = ""
    for line in cmd(["lscpu"]).splitlines():
        if line.startswith("Model name"):
            model = line.split(":", 1)[1].strip()
    mem = ""
    with open("/proc/meminfo") as f:
        mem = "%.0f GiB" % (int(f.readline().split()[1]) / 1024 / 1024)
    return {"cpus": int(cmd(["nproc"]) or 0), "cpu_model": model, "kernel": cmd(["uname", "-r"]), "memory": mem,
            "os": cmd(["sh", "-c", ". /etc/os-release; echo $PRETTY_NAME"]),
            "redis": cmd(["redis-server", "--version"]).split(" sha")[0],
            "engine_commit": cmd(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
            "swift": cmd(["swift", "--version"]).splitlines()[0] if cmd(["swift", "--version"]) else ""}


def summarize(runs):
    groups = {}
    for r in runs:
        if "rate" not in r:
            continue
        key = (r["workload"], r["system"], r["driver"], r["clients"], r["pipeline"])
        groups.setdefault(key, []).append(r)
    out = []
    for key, rs in groups.items():
        rates = sorted(x["rate"] for x in rs)
        s = {"workload": key[0], "system": key[1], "driver": key[2], "clients": key[3], "pipeline": key[4],
             "rounds": len(rs), "min": rates[0], "median": statistics.median(rates), "max": rates[-1],
             "all_checks_ok": all(x["check"].get("ok") for x in rs)}
        for k in ("refusals", "refusals_while_available", "successes", "time_to_sell_out_s", "sold_out",
                  "demand_requests", "p99_ms"):
            vals = [x[k] for x in rs if k in x and x[k] is not None]
            if vals:
                s[k] = statistics.median(vals) if not isinstance(vals[0], bool) else all(vals)
                if k in ("time_to_sell_out_s", "refusals_while_available", "refusals"):
                    s[k + "_range"] = [min(vals), max(vals)]
        s["sold_units"] = statistics.median([x["check"].get("sold_units", 0) for x in rs])
        out.append(s)
    return out


def fmt_rate(v):
    if v >= 1e6:
        return "%.2fM" % (v / 1e6)
    if v >= 1e4:
        return "%.0fk" % (v / 1e3)
    if v >= 1e3:
        return "%.1fk" % (v / 1e3)
    return "%.0f" % v


def cell(s):
    if s is None:
        return "n/a"
    if s["rounds"] > 1:
        return "%s (%s–%s)" % (fmt_rate(s["median"]), fmt_rate(s["min"]), fmt_rate(s["max"]))
    return fmt_rate(s["median"])


def find(summary, workload, system, driver, c, p):
    for s in summary:
        if (s["workload"], s["system"], s["driver"], s["clients"], s["pipeline"]) == (workload, system, driver, c, p):
            return s
    return None


def ratio(a, b):
    if not a or not b or not b["median"]:
        return None
    return a["median"] / b["median"]


def headline(summary):
    """The ratios the chart shows: engine vs Redis (the same Lua work, the same
    load generator) and engine vs PostgreSQL FOR UPDATE (pgbench, pipeline 1)."""
    rows = []
    for workload, driver in (("hot", "redis-benchmark"), ("1000deals", "redis-benchmark"), ("cycle", "engine-bench")):
        for c in CONCURRENCY:
            for p in PIPELINES:
                e = find(summary, workload, "engine", driver, c, p)
                rows.append({"workload": workload, "clients": c, "pipeline": p, "vs": "Redis",
                             "ratio": ratio(e, find(summary, workload, "redis", driver, c, p))})
            e = find(summary, workload, "engine", driver, c, 1)
            rows.append({"workload": workload, "clients": c, "pipeline": 1, "vs": "PostgreSQL FOR UPDATE",
                         "ratio": ratio(e, find(summary, workload, "postgres-for-update", "pgbench", c, 1))})
    return rows


WORKLOAD_TITLES = {"hot": "Hot launch (one deal, 8 lots, supply never runs out): holds/s",
                   "1000deals": "1,000 deals: holds/s",
                   "cycle": "Full cycle hold → allocate → approve: cycles/s"}


def markdown(summary, meta):
    L = []
    L.append("Measured %s on %s (%d cores, %s, kernel %s, %s); %s; PostgreSQL: %s; engine %s. "
             "%d round%s per configuration: median (min–max). The machine is shared with other work "
             "(Swift builds of other branches ran on the same 2 cores): absolute figures are noisy, "
             "compare within a row.%s" % (
                 meta["date"], meta["machine"]["cpu_model"], meta["machine"]["cpus"], meta["machine"]["memory"],
                 meta["machine"]["kernel"], meta["machine"]["os"], meta["machine"]["redis"], meta["postgres"],
                 meta["machine"]["engine_commit"], meta["rounds"], "" if meta["rounds"] == 1 else "s",
                 " Quick mode (COMPARE_QUICK=1): small sizes." if meta["quick"] else ""))
    L.append("")
    for workload in ("hot", "1000deals", "cycle"):
        L.append("**%s**" % WORKLOAD_TITLES[workload])
        L.append("")
        L.append("| system | load generator | " + " | ".join("c=%d P=%d" % (c, p) for c in CONCURRENCY for p in PIPELINES) + " |")
        L.append("|---|---|" + "---|" * (len(CONCURRENCY) * len(PIPELINES)))
        systems = [("engine", "redis-benchmark"), ("engine", "engine-bench"), ("redis", "redis-benchmark"),
                   ("redis", "engine-bench"), ("redis-counter (lower bound)", "redis-benchmark"),
                   ("postgres-for-update", "pgbench"), ("postgres-skip-locked", "pgbench")]
        for system, driver in systems:
            cells = [find(summary, workload, system, driver, c, p) for c in CONCURRENCY for p in PIPELINES]
            if not any(cells):
                continue
            label = {"engine": "AllocationEngine `HOLD`, strict" if workload != "cycle" else "AllocationEngine, strict",
                     "redis": "Redis Lua (reserve.lua%s), appendfsync always" % (
                         "" if workload != "cycle" else " + allocate.lua + approve.lua"),
                     "redis-counter (lower bound)": "Redis, one counter (lower bound: less work)",
                     "postgres-for-update": "PostgreSQL, FOR UPDATE",
                     "postgres-skip-locked": "PostgreSQL, FOR UPDATE SKIP LOCKED (the seed)"}[system]
            texts = []
            for s in cells:
                if s is None:
                    texts.append("—")
                    continue
                t = cell(s)
                if system.startswith("postgres") and s.get("refusals"):
                    t += ", %s refused" % fmt_rate(s["refusals"])
                if not s["all_checks_ok"]:
                    t += " **CHECK FAILED**"
                texts.append(t)
            L.append("| %s | %s | %s |" % (label, driver, " | ".join(texts)))
        L.append("")
        # ratios
        ratios = []
        for c in CONCURRENCY:
            for p in PIPELINES:
                drv = "engine-bench" if workload == "cycle" else "redis-benchmark"
                e = find(summary, workload, "engine", drv, c, p)
                rr = ratio(e, find(summary, workload, "redis", drv, c, p))
                pr = ratio(e, find(summary, workload, "postgres-for-update", "pgbench", c, 1)) if p == 1 else None
                ratios.append("%s%s" % ("%.1f× Redis" % rr if rr else "—", ", %.0f× PG" % pr if pr else ""))
        L.append("Engine ÷ other (same load generator for Redis; PG FOR UPDATE at P=1): " +
                 "; ".join("c=%d P=%d: %s" % (c, p, t) for (c, p), t in
                           zip([(c, p) for c in CONCURRENCY for p in PIPELINES], ratios)) + ".")
        L.append("")
    sizes = meta.get("sizes", {})
    supply, unit = sizes.get("sell_supply", SELL_SUPPLY), sizes.get("sell_units", SELL_UNITS)
    L.append("**Sell-out** (one deal, %s units in 8 lots, requests of %d units, demand 10× the supply: "
             "%s requests, rounded up to a multiple of the connections; refused while units remained = a "
             "refusal that said enough units remained (engine, Redis: `-INSUFFICIENT requested X, available Y` "
             "with Y ≥ X) or, for PostgreSQL, came before a later reservation of the deal started (all of "
             "them when the deal never sold out); time to sell out = first request to the last successful "
             "hold's reply (engine, Redis) or to the start of the last reservation (PostgreSQL))" % (
                 "{:,}".format(supply), unit, "{:,}".format(10 * supply // unit)))
    L.append("")
    L.append("| system | c | P | sold units | holds | refusals | refused while units remained | time to sell out | requests/s |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for system, driver in (("engine", "engine-bench"), ("redis", "engine-bench"), ("postgres-for-update", "pgbench"),
                           ("postgres-skip-locked", "pgbench")):
        for c in CONCURRENCY:
            for p in (PIPELINES if driver == "engine-bench" else [1]):
                s = find(summary, "sellout", system, driver, c, p)
                if not s:
                    continue
                t = s.get("time_to_sell_out_s")
                tr = s.get("time_to_sell_out_s_range")
                tt = ("%.3f s" % t) if t is not None else "n/a"
                if tr and s["rounds"] > 1:
                    tt += " (%.3f–%.3f)" % tuple(tr)
                if not s.get("sold_out"):
                    tt = "did not sell out"
                label = {"engine": "AllocationEngine", "redis": "Redis Lua", "postgres-for-update": "PostgreSQL FOR UPDATE",
                         "postgres-skip-locked": "PostgreSQL SKIP LOCKED"}[system]
                L.append("| %s | %d | %d | %s | %s | %s | %s | %s | %s |%s" % (
                    label, c, p, "{:,.0f}".format(s["sold_units"]), "{:,.0f}".format(s.get("successes", 0)),
                    "{:,.0f}".format(s.get("refusals", 0)), "{:,.0f}".format(s.get("refusals_while_available", 0)),
                    tt, fmt_rate(s["median"]), "" if s["all_checks_ok"] else " **CHECK FAILED**"))
    L.append("")
    L.append("Oversell checks after every run: %s (engine: INVENTORY per lot and `allocation-engine verify` "
             "of the data directory; Redis: every lot recounted from the hold rows; PostgreSQL: every lot "
             "recounted from the lot items of live reservations)." % ("all passed" if meta["checks_ok"] else "**SOME FAILED**"))
    return "\n".join(L) + "\n"


def svg(rows, meta):
    """A horizontal bar chart of the headline ratios, log scale, plain SVG text."""
    import math
    rows = [r for r in rows if r["ratio"]]
    bar_h, gap, left, width = 16, 6, 300, 560
    top = 58
    height = top + len(rows) * (bar_h + gap) + 40
    vmax = max([r["ratio"] for r in rows] + [10])
    decades = max(1, math.ceil(math.log10(vmax)))
    scale = width / (decades + 1)   # the axis starts at 0.1x: a ratio below 1 shows as shorter than 1x
    one = left + scale

    def x(v):
        return left + (math.log10(min(max(v, 0.1), 10.0 ** decades)) + 1) * scale

    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">'
           % (left + width + 80, height),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="10" y="20" font-size="15" font-weight="bold">AllocationEngine throughput ÷ the same work elsewhere (log scale)</text>',
           '<text x="10" y="38" fill="#555">%s · %s, %d cores · median of %d round(s) · red: vs Redis Lua, '
           'blue: vs PostgreSQL FOR UPDATE</text>'
           % (meta["date"], esc(meta["machine"]["cpu_model"]), meta["machine"]["cpus"], meta["rounds"])]
    for d in range(-1, decades + 1):
        gx = one + d * scale
        out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>' % (gx, top - 6, gx, height - 30,
                                                                              "#888" if d == 0 else "#ddd"))
        out.append('<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%s×</text>' % (
            gx, height - 14, "0.1" if d < 0 else "%d" % 10 ** d))
    names = {"hot": "hot launch", "1000deals": "1,000 deals", "cycle": "full cycle"}
    for i, r in enumerate(rows):
        y = top + i * (bar_h + gap)
        color = "#d62728" if r["vs"] == "Redis" else "#1f77b4"
        label = "%s, c=%d P=%d vs %s" % (names[r["workload"]], r["clients"], r["pipeline"], r["vs"])
        out.append('<text x="%d" y="%d" text-anchor="end">%s</text>' % (left - 8, y + bar_h - 4, esc(label)))
        out.append('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>' % (left, y, max(1.0, x(r["ratio"]) - left), bar_h, color))
        out.append('<text x="%.1f" y="%d">%.1f×</text>' % (x(r["ratio"]) + 4, y + bar_h - 4, r["ratio"]))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_outputs(meta, runs, stem):
    summary = summarize(runs)
    heads = headline(summary)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, stem + ".json"), "w") as f:
        json.dump({"meta": meta, "summary": summary, "headline": heads, "runs": runs}, f, indent=1, default=str)
    with open(os.path.join(OUT, stem + ".md"), "w") as f:
        f.write(markdown(summary, meta))
    with open(os.path.join(OUT, stem + ".svg"), "w") as f:
        f.write(svg(heads, meta))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--report":
        # Renders the table and chart again from a run's JSON (its measured runs, unchanged).
        with open(sys.argv[2]) as f:
            saved = json.load(f)
        write_outputs(saved["meta"], saved["runs"], os.path.basename(sys.argv[2])[:-5])
        return 0
    for tool in ("redis-server", "redis-benchmark"):
        if not shutil.which(tool):
            sys.exit("missing %s (run.sh installs it)" % tool)
    for binary in (ENGINE, LOADGEN):
        if not os.path.exists(binary):
            sys.exit("missing %s: swift build -c release" % binary)
    work = tempfile.mkdtemp(prefix="compare-")
    os.chmod(work, 0o755)
    bench = Bench(work)
    started = datetime.datetime.now(datetime.timezone.utc)
    meta = {"date": started.strftime("%Y-%m-%d %H:%M UTC"), "quick": QUICK, "rounds": ROUNDS, "machine": machine()}
    try:
        bench.pg.start()
        meta["postgres"] = bench.pg.version()
        for rnd in range(1, ROUNDS + 1):
            only = os.environ.get("COMPARE_WORKLOADS", "hot,many,sellout,cycle").split(",")
            for workload in [w for w in (bench.hot, bench.many, bench.sellout, bench.cycle) if w.__name__ in only]:
                log("round %d/%d: %s" % (rnd, ROUNDS, workload.__name__))
                workload(rnd)
    finally:
        bench.pg.stop()
        for s in (bench.engine, bench.redis):
            p = getattr(s, "proc", None)
            if p and p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(work, ignore_errors=True)
    meta["checks_ok"] = bench.checks_ok
    meta["duration_s"] = round((datetime.datetime.now(datetime.timezone.utc) - started).total_seconds())
    meta["sizes"] = {"pg_seconds": PG_SECONDS, "engine_bench_seconds": NB_SECONDS, "redis_benchmark_requests": RB_REQUESTS,
                     "hot_lots": HOT_LOTS, "hot_lot_units": HOT_LOT_UNITS, "hold_units": HOLD_UNITS,
                     "sell_supply": SELL_SUPPLY, "sell_units": SELL_UNITS, "many_deals": MANY_DEALS}
    stem = os.environ.get("COMPARE_STEM", "compare-quick" if QUICK else "compare")
    write_outputs(meta, bench.runs, stem)
    log("wrote %s/%s.{json,md,svg} in %d s; checks %s" % (OUT, stem, meta["duration_s"],
                                                       "passed" if bench.checks_ok else "FAILED"))
    return 0 if bench.checks_ok else 1


if __name__ == "__main__":
    sys.exit(main())
