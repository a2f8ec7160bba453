#!/usr/bin/env python3
"""Launch simulation driver: hundreds of client connections over real TCP doing what a
deal launch does, against a real `allocation-engine serve`, optionally killed with
SIGKILL at random moments and restarted on the same data directory.

Every request and the reply it got (or that it got none: the connection dropped at a
kill, or the client gave up on it on purpose to retry with the same ID) is written to a
journal (JSON lines). The independent checker (check.py, its own process, sharing no
code with this file or the engine) reads the journal and the server's rows at every
checkpoint (after each kill/restart cycle, every --check-every seconds without kills,
and at the end) and says whether they agree. This file only drives and records; it
judges nothing.

The RESP client here is written by hand on asyncio streams so that hundreds of
connections cost one thread and a request can be abandoned mid-flight.
"""
import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time

# ---------------------------------------------------------------- RESP over asyncio


class Dropped(Exception):
    """The connection failed before the reply arrived: the outcome is unknown."""


def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


async def read_reply(reader):
    line = await reader.readuntil(b"\r\n")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return {"+": rest.decode()}
    if kind == b"-":
        return {"-": rest.decode()}
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = await reader.readexactly(n + 2)
        return data[:-2].decode()
    if kind == b"*":
        n = int(rest)
        if n < 0:
            return None
        return [await read_reply(reader) for _ in range(n)]
    raise Dropped("unexpected reply type %r" % line)


class Conn:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @staticmethod
    async def open(port):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        return Conn(r, w)

    async def call(self, args, timeout):
        try:
            self.writer.write(encode(args))
            await self.writer.drain()
            return await asyncio.wait_for(read_reply(self.reader), timeout)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ValueError) as e:
            self.close()
            raise Dropped(type(e).__name__)

    async def send_and_abandon(self, args, delay):
        """Sends a request and closes the connection without reading the reply, as a
        client whose timeout fired does; the request may or may not have been applied."""
        try:
            self.writer.write(encode(args))
            await self.writer.drain()
            if delay > 0:
                await asyncio.sleep(delay)
        except OSError:
            pass
        self.close()

    def close(self):
        try:
            self.writer.close()
        except Exception:
            pass


# ---------------------------------------------------------------- the journal


class Journal:
    def __init__(self, path):
        self.f = open(path, "w", buffering=1 << 20)
        self.requests = 0
        self.replies = 0
        self.errors = 0
        self.no_reply = 0

    def event(self, **kw):
        self.f.write(json.dumps(kw, separators=(",", ":")) + "\n")

    def request(self, c, args, t0, t1, reply=None, nr=None, tag=None):
        rec = {"c": c, "a": args, "t0": round(t0, 6)}
        self.requests += 1
        if nr is None:
            rec["t1"] = round(t1, 6)
            rec["r"] = reply
            self.replies += 1
            if isinstance(reply, dict) and "-" in reply:
                self.errors += 1
        else:
            rec["nr"] = nr
            self.no_reply += 1
        if tag:
            rec["tag"] = tag
        self.f.write(json.dumps(rec, separators=(",", ":")) + "\n")

    def flush(self):
        self.f.flush()
        os.fsync(self.f.fileno())


# ---------------------------------------------------------------- the server process


class Server:
    def __init__(self, binary, data_dir, port, extra):
        self.binary, self.data_dir, self.port, self.extra = binary, data_dir, port, extra
        self.proc = None
        self.log = open(data_dir.rstrip("/") + ".server.log", "ab")

    async def start(self, timeout=60):
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--data-dir", self.data_dir, "--port", str(self.port), "--durability", "strict"] + self.extra,
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise SystemExit("server exited with status %s before listening (log: %s)" % (self.proc.returncode, self.log.name))
            try:
                c = await Conn.open(self.port)
                r = await c.call(["PING"], 5)
                c.close()
                if r == {"+": "PONG"}:
                    return
            except (OSError, Dropped):
                pass
            if time.time() > deadline:
                self.kill9()
                raise SystemExit("server did not listen within %d s" % timeout)
            await asyncio.sleep(0.02)

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc:
            self.proc.wait()

    def stop(self, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        return self.proc.returncode if self.proc else None


# ---------------------------------------------------------------- the launch


def fmt_units(r):
    """Units as a decimal string from a count of 1/100 units (so some holds are fractional)."""
    whole, frac = divmod(r, 100)
    return str(whole) if frac == 0 else "%d.%02d" % (whole, frac) if frac % 10 else "%d.%d" % (whole, frac // 10)


class Launch:
    def __init__(self, opts, journal, server):
        self.o, self.j, self.server = opts, journal, server
        self.rng = random.Random(opts.seed)
        self.gate = asyncio.Event()
        self.gate.set()
        self.stopping = False
        self.parked = 0
        self.deals = []   # (deal id, scarce?)
        self.hot = None

    # -- setup: deals and lots, acknowledged before any traffic
    async def setup(self):
        o = self.o
        c = await Conn.open(self.server.port)
        layout = []
        for d in range(o.deals):
            scarce = (o.supply == "scarce") or (o.supply == "mixed" and d % 2 == 1)
            deal = "launch-%d" % d
            nlots = 8 if o.deals == 1 else 1 + d % 3
            per_lot = (o.scarce_units if scarce else o.ample_units) // nlots
            lots = [["%s-lot%d" % (deal, k), str(per_lot)] for k in range(nlots)]
            layout.append({"deal": deal, "scarce": scarce, "lots": lots})
            self.deals.append((deal, scarce))
        self.j.event(ev="setup", t=time.time(), deals=layout, clients=o.clients, seed=o.seed)
        for spec in layout:
            for args in [["DEAL.CREATE", spec["deal"], "PRICE", "28.5"]] + [
                    ["LOT.ADD", spec["deal"], lot, units, "20", "ACQUIRED", "2024-01-%02d" % (1 + k)]
                    for k, (lot, units) in enumerate(spec["lots"])]:
                t0 = time.time()
                r = await c.call(args, 60)
                self.j.request(-1, args, t0, time.time(), r)
                if r != {"+": "OK"}:
                    raise SystemExit("setup failed: %s -> %s" % (args, r))
        c.close()
        self.hot = self.deals[0][0]
        self.j.flush()

    def pick_deal(self, rng):
        if len(self.deals) == 1 or rng.random() < self.o.hot_share:
            return self.deals[0][0]
        return self.deals[rng.randrange(len(self.deals))][0]

    # -- one client connection
    async def client(self, c):
        o, rng = self.o, random.Random(self.o.seed * 1000003 + c)
        conn = None
        n = 0
        pending = []      # own pending holds: (hold id, hold args)
        reviews = []      # own allocations in pending_review
        approved = []     # own approved allocations
        placed = []       # own acknowledged ID holds: args, for duplicate retries
        retry = None      # a request with no reply, to repeat after the restart (idempotent)
        mine = set()      # hold ids this client has taken into its lists
        while not self.stopping:
            if not self.gate.is_set():
                self.parked += 1
                await self.gate.wait()
                self.parked -= 1
                continue
            if conn is None:
                try:
                    conn = await Conn.open(self.server.port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
            if retry is not None:
                args, retry = retry, None
                kind = args[0]
            else:
                n += 1
                roll = rng.random()
                if roll < 0.10 and pending:
                    kind = "RELEASE"
                    hid, _ = pending.pop(rng.randrange(len(pending)))
                    args = ["RELEASE", hid]
                elif roll < 0.22 and pending:
                    kind = "ALLOCATE"
                    hid, _ = pending.pop(rng.randrange(len(pending)))
                    args = ["ALLOCATE", hid] + (["ID", "al-%s" % hid] if rng.random() < 0.5 else [])
                elif roll < 0.28 and reviews:
                    kind = "APPROVE"
                    args = ["APPROVE", reviews.pop(rng.randrange(len(reviews)))]
                elif roll < 0.31 and reviews:
                    kind = "REJECT"
                    args = ["REJECT", reviews.pop(rng.randrange(len(reviews)))]
                elif roll < 0.34 and approved:
                    kind = "SETTLE"
                    args = ["SETTLE", approved.pop(rng.randrange(len(approved)))]
                elif roll < 0.37 and placed:
                    kind = "HOLD"   # a client that did not trust its reply sends the same ID again
                    args = placed[rng.randrange(len(placed))]
                else:
                    kind = "HOLD"
                    deal = self.pick_deal(rng)
                    units = fmt_units(rng.choice([100, 100, 200, 500, 1000, 250, 50, 1250, 3000]) * rng.randint(1, 4))
                    ttl = str(rng.choice([1, 2, 3])) if rng.random() < o.short_ttl_share else "3600"
                    if rng.random() < 0.7:
                        args = ["HOLD", deal, "i%d" % (c % 97), units, "28.5", "TTL", ttl, "ID", "c%d-%d" % (c, n)]
                    else:
                        # Without ID: a unique investor lets the checker find it if the reply is lost.
                        args = ["HOLD", deal, "n%d-%d" % (c, n), units, "28.5", "TTL", ttl]
                    if rng.random() < 0.3:
                        args.append("PARTIAL")
                    if "ID" in args and rng.random() < o.abandon_share:
                        # A client timeout: give up on the request, reconnect, send it again.
                        t0 = time.time()
                        await conn.send_and_abandon(args, rng.choice([0, 0, 0.001, 0.003]))
                        self.j.request(c, args, t0, None, nr="abandoned")
                        conn = None
                        retry = args
                        continue
            t0 = time.time()
            try:
                r = await conn.call(args, o.request_timeout)
            except Dropped as e:
                self.j.request(c, args, t0, None, nr="dropped:" + str(e))
                conn = None
                # Idempotent requests are repeated after the restart; a HOLD without ID cannot be.
                if not (kind == "HOLD" and "ID" not in args):
                    retry = args
                continue
            t1 = time.time()
            self.j.request(c, args, t0, t1, r)
            if kind == "HOLD" and isinstance(r, list):
                short = args[args.index("TTL") + 1] != "3600"
                if r[0] not in mine and (not short or rng.random() < 0.2):   # most short holds are left to expire
                    pending.append((r[0], args))
                mine.add(r[0])
                if "ID" in args and args not in placed:
                    placed.append(args)
                    if len(placed) > 50:
                        placed.pop(0)
            elif kind == "ALLOCATE" and isinstance(r, str):
                reviews.append(r)
            elif kind == "APPROVE" and r == {"+": "OK"}:
                approved.append(args[1])
        if conn is not None:
            conn.close()

    async def quiesce(self):
        """Stops traffic: every client finishes its request and parks."""
        self.gate.clear()
        deadline = time.time() + 120
        while self.parked < self.o.clients and time.time() < deadline:
            await asyncio.sleep(0.01)
        if self.parked < self.o.clients:
            raise SystemExit("clients did not park within 120 s (%d of %d)" % (self.parked, self.o.clients))

    # -- the last phase of a sell-out: take whatever remains, then be refused
    async def drain(self):
        c = await Conn.open(self.server.port)
        for deal, scarce in self.deals:
            if not scarce:
                continue
            for k in (1, 2):
                args = ["HOLD", deal, "drain", str(self.o.scarce_units * 10), "28.5", "TTL", "3600", "ID", "drain-%s-%d" % (deal, k), "PARTIAL"]
                t0 = time.time()
                r = await c.call(args, 60)
                self.j.request(-2, args, t0, time.time(), r, tag="drain")
        c.close()


class Checker:
    """The checker process, asked for a verdict at each checkpoint over a pipe."""

    def __init__(self, opts, journal_path):
        here = os.path.dirname(os.path.abspath(__file__))
        cmd = [sys.executable, os.path.join(here, "check.py"), "--journal", journal_path, "--port", str(opts.port), "--serve"]
        if opts.verbose:
            cmd.append("--verbose")
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.verdicts = []

    def ask(self, label, final=False):
        self.p.stdin.write(("final " if final else "check ") + label + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise SystemExit("the checker exited")
        v = json.loads(line)
        self.verdicts.append(v)
        return v

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def say(v):
    flag = "ok" if v["ok"] else "FAIL"
    print("[launch] check %-22s %s  %s" % (v["label"], flag, v.get("summary", "")), flush=True)
    for p in v.get("problems", [])[:20]:
        print("           - " + p, flush=True)
    for line in v.get("diagnosis", [])[:150]:
        print("           | " + line, flush=True)


async def main_async(o):
    os.makedirs(o.data_dir, exist_ok=True)
    journal_path = o.journal or os.path.join(o.data_dir.rstrip("/") + ".journal.jsonl")
    j = Journal(journal_path)
    server = Server(o.binary, o.data_dir, o.port, o.server_arg)
    await server.start()
    j.event(ev="up", t=time.time())
    launch = Launch(o, j, server)
    await launch.setup()
    checker = Checker(o, journal_path)
    started = time.time()
    tasks = [asyncio.ensure_future(launch.client(c)) for c in range(o.clients)]

    async def clock_samples():
        # Wall and monotonic time side by side: a step of the wall clock (which the
        # engine's expiries and the journal's times both use) shows in the checker.
        while not launch.stopping:
            j.event(ev="clock", t=time.time(), m=time.monotonic())
            await asyncio.sleep(0.1)
    clock_task = asyncio.ensure_future(clock_samples())
    failed = False
    cycles = 0
    rng = launch.rng
    end_at = started + o.seconds
    try:
        if o.kill_cycles > 0:
            per = max(0.2, o.seconds / o.kill_cycles)
            for cycle in range(o.kill_cycles):
                await asyncio.sleep(per * rng.uniform(0.3, 1.7))
                t = time.time()
                server.kill9()
                launch.gate.clear()
                j.event(ev="kill", t=t, cycle=cycle)
                await launch.quiesce()
                if o.verify_every and cycle % o.verify_every == 0:
                    v = subprocess.run([o.binary, "verify", o.data_dir], capture_output=True, text=True)
                    if v.returncode != 0:
                        print("[launch] verify after kill %d failed:\n%s%s" % (cycle, v.stdout, v.stderr), flush=True)
                        failed = True
                await server.start()
                j.event(ev="up", t=time.time(), cycle=cycle)
                j.flush()
                v = checker.ask("after kill %d" % (cycle + 1))
                say(v)
                cycles += 1
                failed |= not v["ok"]
                if failed and o.stop_on_failure:
                    raise SystemExit("stopped at the first failed check; the server is left running: pid %d, port %d" % (server.proc.pid, o.port))
                launch.gate.set()
        else:
            while time.time() < end_at:
                await asyncio.sleep(min(o.check_every, max(0.05, end_at - time.time())))
                if time.time() >= end_at:
                    break
                await launch.quiesce()
                j.flush()
                v = checker.ask("at %.0f s" % (time.time() - started))
                say(v)
                failed |= not v["ok"]
                if failed and o.stop_on_failure:
                    break
                launch.gate.set()
        # The end: stop traffic, let the short holds run out, sell out what remains.
        await launch.quiesce()
        launch.stopping = True
        launch.gate.set()
        await asyncio.gather(*tasks, clock_task)
        elapsed = time.time() - started
        await asyncio.sleep(4.5)
        j.event(ev="drain", t=time.time())
        await launch.drain()
        j.flush()
        v = checker.ask("end", final=True)
        say(v)
        failed |= not v["ok"]
        # A clean stop and a restart: the same state comes back from the log and snapshots.
        code = server.stop()
        j.event(ev="kill", t=time.time(), clean=True)
        if code != 0:
            print("[launch] clean shutdown exited %s" % code, flush=True)
            failed = True
        await server.start()
        j.event(ev="up", t=time.time())
        j.flush()
        v = checker.ask("after clean restart", final=True)
        say(v)
        failed |= not v["ok"]
        if o.selftest:
            failed |= not selftest(o, journal_path)
    finally:
        launch.stopping = True
        launch.gate.set()
        if not (failed and o.stop_on_failure):
            server.stop()
        j.flush()
        checker.close()
    summary = {
        "clients": o.clients, "deals": o.deals, "supply": o.supply, "seconds": round(elapsed, 1),
        "requests": j.requests, "replies": j.replies, "error_replies": j.errors, "no_reply": j.no_reply,
        "kill_cycles": cycles, "checks": len(checker.verdicts),
        "checks_failed": sum(1 for v in checker.verdicts if not v["ok"]),
        "final": checker.verdicts[-1].get("figures", {}) if checker.verdicts else {},
        "ok": not failed, "journal": journal_path, "seed": o.seed,
    }
    print("[launch] summary " + json.dumps(summary), flush=True)
    if o.summary_json:
        with open(o.summary_json, "w") as f:
            json.dump(summary, f, indent=2)
    return 0 if not failed else 1


def mutations(lines):
    """Journals that lie about one reply each, in the ways the checker exists to catch."""
    recs = [json.loads(l) for l in lines]
    reqs = [(i, r) for i, r in enumerate(recs) if "a" in r and r["c"] >= 0]
    out = {}
    # An acknowledged hold the server does not have (a lost acknowledged change).
    for i, r in reqs:
        if r["a"][0] == "HOLD" and "ID" in r["a"] and isinstance(r.get("r"), list):
            fake = json.loads(json.dumps(r))
            k = fake["a"].index("ID") + 1
            fake["a"][k] = fake["r"][0] = "never-placed-" + fake["a"][k]
            out["lost acknowledged hold"] = recs[:i + 1] + [fake] + recs[i + 1:]
            break
    # A release acknowledged but not applied (the hold still pending on the server): drop its reply.
    for i, r in reqs:
        if r["a"][0] == "RELEASE" and r.get("r") == {"+": "OK"}:
            out["release not applied"] = recs[:i] + recs[i + 1:]
            break
    # A retried ID that answered a different receipt (booked twice).
    seen = {}
    for i, r in reqs:
        if r["a"][0] == "HOLD" and "ID" in r["a"] and isinstance(r.get("r"), list):
            if r["r"][0] in seen:
                bad = json.loads(json.dumps(r))
                bad["r"][1] += 1000
                out["retry answered another receipt"] = recs[:i] + [bad] + recs[i + 1:]
                break
            seen[r["r"][0]] = i
    # A refusal moved to the first instant of the launch, when the whole supply was free.
    first = next(r["t0"] for i, r in reqs)
    for i, r in reqs:
        if isinstance(r.get("r"), dict) and r["r"].get("-", "").startswith("INSUFFICIENT") and "PARTIAL" not in r["a"]:
            early = json.loads(json.dumps(r))
            early["t0"], early["t1"] = first - 0.002, first - 0.001
            out["refused while units remained"] = recs[:i] + recs[i + 1:] + [early]
            break
    return out


def selftest(o, journal_path):
    """The checker must fail on each lying journal, against the same server."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(journal_path) as f:
        lines = f.readlines()
    ok = True
    for name, recs in mutations(lines).items():
        path = journal_path + ".mutated"
        with open(path, "w") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")
        p = subprocess.run([sys.executable, os.path.join(here, "check.py"), "--journal", path, "--port", str(o.port)],
                           capture_output=True, text=True)
        caught = p.returncode == 1
        ok &= caught
        first = json.loads(p.stdout)["problems"][:1] if p.stdout.strip().startswith("{") else [p.stderr[-300:]]
        print("[launch] selftest %-32s %s  %s" % (name, "caught" if caught else "MISSED", first[0] if first else ""), flush=True)
        os.remove(path)
        if os.path.exists(path + ".diagnosis.txt"):
            os.remove(path + ".diagnosis.txt")
    return ok


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default=".build/release/allocation-engine")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--port", type=int, default=7390)
    p.add_argument("--journal")
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--seconds", type=float, default=20, help="traffic time (with --kill-cycles: spread over the cycles)")
    p.add_argument("--kill-cycles", type=int, default=0)
    p.add_argument("--deals", type=int, default=1, help="1 = one hot deal with 8 lots; more: deal 0 hot, the rest many small deals")
    p.add_argument("--supply", choices=["ample", "scarce", "mixed"], default="mixed")
    p.add_argument("--ample-units", type=int, default=400_000_000)
    p.add_argument("--scarce-units", type=int, default=20_000)
    p.add_argument("--hot-share", type=float, default=0.3, help="share of holds on deal 0 when there are many deals")
    p.add_argument("--short-ttl-share", type=float, default=0.3)
    p.add_argument("--abandon-share", type=float, default=0.03)
    p.add_argument("--request-timeout", type=float, default=60)
    p.add_argument("--check-every", type=float, default=5)
    p.add_argument("--verify-every", type=int, default=0, help="run `allocation-engine verify` after every Nth kill")
    p.add_argument("--seed", type=int, default=int(os.environ.get("LAUNCH_SEED", "1")))
    p.add_argument("--stop-on-failure", action="store_true")
    p.add_argument("--summary-json")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--selftest", action="store_true", help="at the end, check journals with one reply falsified: each must fail")
    p.add_argument("--server-arg", action="append", default=[], help="extra argument for serve (repeatable)")
    o = p.parse_args()
    sys.exit(asyncio.run(main_async(o)))


if __name__ == "__main__":
    main()
