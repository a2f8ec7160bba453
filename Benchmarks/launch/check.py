#!/usr/bin/env python3
"""The launch simulation's independent checker.

Its own process; it shares no code with the engine nor with the driver (drive.py): it
reads the driver's journal (every request, its send and reply times, and the reply it
got or that it got none) and asks the server through redis-py. From the replies alone it
recomputes every lot (units held by pending holds, units in live allocations) and
compares with INVENTORY and with the rows (HOLD.GET, ALLOCATION.GET,
INVESTOR.STATEMENT). What it checks, exactly (docs/benchmarks.md, "Launch simulation"):

  lots       for every lot, INVENTORY's held / allocated / remaining equal the
             recomputation, none is negative, total = remaining + held + allocated.
  durable    every acknowledged hold, allocation and decision is present with its
             outcome after every kill -9 and restart.
  whole      a request without a reply (in flight at the kill, or abandoned by the
             client) is either fully applied or fully absent: the row is exactly the
             request's, or there is none and its units are back.
  once       every ID sent more than once answered one receipt (same id, expiry,
             lots), and the final census per investor finds no hold the replies do
             not account for.
  timeline   no refusal while units remained and no oversell at any moment, judged
             from reply times alone (see refusal_checks).
  sellout    after the last phase of a sell-out deal every lot has 0 remaining and the
             holds and allocations add up to exactly the supply.

Modes: `--serve` answers `check <label>` / `final <label>` lines on stdin with one JSON
verdict line each (the driver's checkpoints); without it, one final check and exit
status 0 (all agree) or 1.
"""
import argparse
import bisect
import json
import random
import re
import sys
import time
from decimal import Decimal

import redis

SCALE = 10 ** 8          # units have 8 decimals
INF = float("inf")


def raw(s):
    """Units as an exact integer count of 1e-8 units."""
    d = Decimal(s) * SCALE
    if d != d.to_integral_value():
        raise ValueError("more than 8 decimals: %r" % s)
    return int(d)


def parse_lots(text):
    out = {}
    if text:
        for part in text.split(","):
            lot, u = part.rsplit(":", 1)
            out[lot] = out.get(lot, 0) + raw(u)
    return out


class Hold:
    __slots__ = ("id", "deal", "inv", "req", "price", "ttl", "partial", "t_first", "t_ack", "ack_t0",
                 "filled", "lots", "exp", "state", "doubt", "alloc", "end_def", "end_early", "touched")

    def __init__(self, hid, p, t_first):
        self.id = hid
        self.deal, self.inv, self.req, self.price, self.ttl, self.partial = p["deal"], p["inv"], p["req"], p["price"], p["ttl"], p["partial"]
        self.t_first, self.t_ack, self.ack_t0 = t_first, INF, None
        self.filled, self.lots, self.exp = 0, {}, 0
        self.state = "pending"   # pending | cancelled | expired | allocated
        self.doubt = None        # the set of states possible after an unanswered request
        self.alloc = None
        self.end_def = None      # when its units were certainly free again (None: not ended)
        self.end_early = None    # the earliest its units may have become free
        self.touched = True


class Alloc:
    __slots__ = ("id", "hold", "state", "doubt", "touched")

    def __init__(self, aid, hold):
        self.id, self.hold, self.state, self.doubt, self.touched = aid, hold, "pending_review", None, True


def hold_params(a):
    p = {"deal": a[1], "inv": a[2], "req": raw(a[3]), "price": Decimal(a[4]), "ttl": 1800, "partial": "PARTIAL" in a, "id": None}
    i = 5
    while i < len(a):
        if a[i] == "TTL":
            p["ttl"] = int(a[i + 1]); i += 2
        elif a[i] == "ID":
            p["id"] = a[i + 1]; i += 2
        else:
            i += 1
    return p


class Checker:
    def __init__(self, journal, port, sweep_slack, verbose):
        self.path, self.port, self.slack, self.verbose = journal, port, sweep_slack, verbose
        self.f = open(journal)
        self.partial_line = ""
        self.lot_total, self.lot_deal, self.deal_lots, self.scarce = {}, {}, {}, set()
        self.holds, self.allocs = {}, {}
        self.unplaced = {}    # caller id -> (params, first send time): sent, never answered with a receipt
        self.noid = {}        # (deal, investor) -> (params, send time): a HOLD without ID, never answered
        self.ghosts = []      # (deal, start, end, units): unanswered holds found absent
        self.refusals = []    # (deal, t0, t1, requested, partial, available claimed)
        self.placements = []  # (hold, t0, t1) of each first receipt
        self.downtime = []    # [kill, up]
        self.drains = {}      # deal -> [(rec)]
        self.problems = []
        self.n = {"requests": 0, "replies": 0, "no_reply": 0, "holds_acked": 0, "refused_insufficient": 0,
                  "id_retries": 0, "receipts_repeated": 0, "unanswered_present": 0, "unanswered_absent": 0,
                  "allocations": 0, "approved": 0, "rejected": 0, "settled": 0, "released": 0, "expired_replies": 0,
                  "other_errors": 0}
        self.attempts = {}    # caller id -> attempts seen
        self.trail = {}       # hold id -> the journal lines that touched it (for diagnoses)
        self.diagnosis = []   # lines explaining a failed timeline bound (per checkpoint)
        self.clock = []       # (wall, monotonic) pairs the driver wrote: a wall-clock step shows here

    def problem(self, text):
        if len(self.problems) < 200:
            self.problems.append(text)

    # ------------------------------------------------------------ the journal

    def consume(self):
        """Reads every complete line the driver has flushed since the last call."""
        for line in self.f:
            if not line.endswith("\n"):
                self.partial_line += line
                continue
            line, self.partial_line = self.partial_line + line, ""
            rec = json.loads(line)
            if "ev" in rec:
                self.event(rec)
            elif rec["c"] >= 0 or rec.get("tag") == "drain":
                self.request(rec)

    def event(self, e):
        if e["ev"] == "setup":
            for d in e["deals"]:
                self.deal_lots[d["deal"]] = [lot for lot, _ in d["lots"]]
                if d["scarce"]:
                    self.scarce.add(d["deal"])
                for lot, units in d["lots"]:
                    self.lot_total[lot] = raw(units)
                    self.lot_deal[lot] = d["deal"]
        elif e["ev"] == "kill":
            self.downtime.append([e["t"], INF])
        elif e["ev"] == "up" and self.downtime:
            self.downtime[-1][1] = e["t"]
        elif e["ev"] == "clock":
            self.clock.append((e["t"], e["m"]))

    def request(self, rec):
        a = rec["a"]
        self.n["requests"] += 1
        answered = "r" in rec
        self.n["replies" if answered else "no_reply"] += 1
        r = rec.get("r")
        err = r["-"] if isinstance(r, dict) and "-" in r else None
        if rec.get("tag") == "drain":
            self.drains.setdefault(a[1], []).append(rec)
        getattr(self, "on_" + a[0].lower())(a, rec, r, err)
        self.remember(a, rec, r)

    def remember(self, a, rec, r):
        """Keeps, per hold, a short line for each request about it (printed by diagnoses)."""
        if a[0] == "HOLD":
            key = r[0] if isinstance(r, list) else (a[a.index("ID") + 1] if "ID" in a else None)
        elif a[0] in ("RELEASE", "ALLOCATE"):
            key = a[1]
        else:
            al = self.allocs.get(a[1])
            key = al.hold.id if al else None
        if key is None:
            return
        reply = json.dumps(r, separators=(",", ":"))[:90] if "r" in rec else "no reply (%s)" % rec.get("nr")
        self.trail.setdefault(key, []).append("%s %s t0=%.6f t1=%s -> %s" % (
            a[0], " ".join(a[1:3]) if a[0] == "HOLD" else a[1], rec["t0"], "%.6f" % rec["t1"] if "t1" in rec else "-", reply))

    def clock_steps(self):
        """The largest change of (wall - monotonic) between the driver's clock samples:
        the wall clock (the engine's and the journal's) stepped by that much."""
        offs = [t - m for t, m in self.clock]
        if len(offs) < 2:
            return 0.0
        return max(offs) - min(offs)

    def on_hold(self, a, rec, r, err):
        p = hold_params(a)
        t0 = rec["t0"]
        cid = p["id"]
        if cid is not None:
            self.attempts[cid] = self.attempts.get(cid, 0) + 1
            if self.attempts[cid] == 2:
                self.n["id_retries"] += 1
        if "r" not in rec:
            if cid is None:
                self.noid[(p["deal"], p["inv"])] = (p, t0)
            elif cid not in self.holds and cid not in self.unplaced:
                self.unplaced[cid] = (p, t0)
            return
        if isinstance(r, list):
            hid, exp, flat = r[0], r[1], r[2]
            lots = {}
            for i in range(0, len(flat), 2):
                lots[flat[i]] = lots.get(flat[i], 0) + raw(flat[i + 1])
            if cid is not None and hid != cid:
                self.problem("HOLD ID %s answered the receipt of %s" % (cid, hid))
            h = self.holds.get(hid)
            if h is not None:
                self.n["receipts_repeated"] += 1
                if cid is None:
                    self.problem("a HOLD without ID answered the id %s, which an earlier hold has" % hid)
                elif (h.exp, h.lots) != (exp, lots):
                    self.problem("retried ID %s answered a different receipt: %s %s, first %s %s" % (hid, exp, lots, h.exp, h.lots))
                if h.t_ack == INF:   # found by a read after a kill, now answered
                    h.t_ack, h.ack_t0 = rec["t1"], t0
                return
            first = t0
            if cid in self.unplaced:
                first = self.unplaced.pop(cid)[1]
            h = Hold(hid, p, first)
            h.exp, h.lots, h.filled = exp, lots, sum(lots.values())
            h.t_ack, h.ack_t0 = rec["t1"], t0
            self.validate_new(h, first, rec["t1"])
            self.holds[hid] = h
            if first == t0:   # decided while this request was in flight
                self.placements.append(h)
            self.n["holds_acked"] += 1
            return
        if err is not None and err.startswith("INSUFFICIENT"):
            self.n["refused_insufficient"] += 1
            m = re.match(r"INSUFFICIENT requested ([0-9.]+), available ([0-9.]+)", err)
            if not m:
                self.problem("unreadable refusal: %s" % err)
                return
            req, avail = raw(m.group(1)), raw(m.group(2))
            if req != p["req"]:
                self.problem("refusal names requested %s for a request of %s" % (m.group(1), a[3]))
            if p["partial"] and avail != 0:
                self.problem("PARTIAL hold refused with %s available: %s" % (m.group(2), a))
            if not p["partial"] and avail >= req:
                self.problem("hold refused though the refusal says enough is available: %s -> %s" % (a, err))
            self.refusals.append((p["deal"], rec["t0"], rec["t1"], req, p["partial"], avail))
            if cid is not None and cid in self.holds:
                self.problem("retried ID %s was refused although the hold exists: %s" % (cid, err))
            return
        self.other_error(a, err, r)

    def validate_new(self, h, first, t1):
        if h.partial:
            if not 0 < h.filled <= h.req:
                self.problem("PARTIAL hold %s filled %d of %d" % (h.id, h.filled, h.req))
        elif h.filled != h.req:
            self.problem("hold %s filled %d, requested %d" % (h.id, h.filled, h.req))
        for lot in h.lots:
            if self.lot_deal.get(lot) != h.deal:
                self.problem("hold %s took lot %s, not of its deal %s" % (h.id, lot, h.deal))
        lo, hi = int(first * 1000) + h.ttl * 1000 - 2, int(t1 * 1000) + h.ttl * 1000 + 2
        if not lo <= h.exp <= hi:
            self.problem("hold %s expires at %d, outside [%d, %d] for its TTL" % (h.id, h.exp, lo, hi))

    def other_error(self, a, err, r):
        self.n["other_errors"] += 1
        if err is not None and err.startswith("LIMIT"):
            return   # the log too far behind the disk: a documented, retryable refusal
        self.problem("unexpected reply to %s: %s" % (a, r))

    def hold_for(self, hid, a):
        h = self.holds.get(hid)
        if h is None:
            self.problem("%s of a hold no reply announced: %s" % (a[0], a))
        return h

    def on_release(self, a, rec, r, err):
        h = self.hold_for(a[1], a)
        if h is None:
            return
        h.touched = True
        t0 = rec["t0"]
        if "r" not in rec:
            h.doubt = (h.doubt or {h.state}) | {"cancelled"}
            h.end_early = min(h.end_early or INF, t0)
            return
        possible = h.doubt or {h.state}
        if r == {"+": "OK"}:
            if "cancelled" in possible:
                pass
            elif "pending" in possible:
                if h.exp <= int(t0 * 1000) - 1:
                    self.problem("RELEASE %s answered OK %d ms after the hold expired" % (h.id, int(t0 * 1000) - h.exp))
                self.n["released"] += 1
            else:
                self.problem("RELEASE %s answered OK but the hold is %s" % (h.id, possible))
            if h.state != "cancelled":
                h.end_early = min(h.end_early or INF, t0)
                h.end_def = rec["t1"]
            h.state, h.doubt = "cancelled", None
        elif err is not None and err.startswith("EXPIRED"):
            self.n["expired_replies"] += 1
            if h.exp > int(rec["t1"] * 1000) + 1:
                self.problem("RELEASE %s answered EXPIRED %d ms before its expiry" % (h.id, h.exp - int(rec["t1"] * 1000)))
            if not possible & {"pending", "expired"}:
                self.problem("RELEASE %s answered EXPIRED but the hold is %s" % (h.id, possible))
            h.state, h.doubt = "expired", None
        elif err is not None and err.startswith("CONFLICT") and "allocated" in possible:
            h.state, h.doubt = "allocated", None
        else:
            self.other_error(a, err, r)

    def on_allocate(self, a, rec, r, err):
        h = self.hold_for(a[1], a)
        if h is None:
            return
        h.touched = True
        given = a[3] if len(a) > 3 else None
        if "r" not in rec:
            h.doubt = (h.doubt or {h.state}) | {"allocated"}
            if given and h.alloc is None:
                h.alloc = given   # if it happened, under this id
            return
        possible = h.doubt or {h.state}
        if isinstance(r, str):
            if given is not None and r != given:
                self.problem("ALLOCATE %s ID %s answered %s" % (h.id, given, r))
            if "allocated" in possible and h.alloc not in (None, r) and h.state == "allocated":
                self.problem("hold %s allocated again under %s, first %s" % (h.id, r, h.alloc))
            elif "pending" not in possible and "allocated" not in possible:
                self.problem("ALLOCATE %s answered %s but the hold is %s" % (h.id, r, possible))
            elif h.state == "pending" and h.exp <= int(rec["t0"] * 1000) - 1:
                self.problem("ALLOCATE %s succeeded %d ms after the hold expired" % (h.id, int(rec["t0"] * 1000) - h.exp))
            h.state, h.doubt, h.alloc = "allocated", None, r
            if r not in self.allocs:
                self.allocs[r] = Alloc(r, h)
                self.n["allocations"] += 1
        elif err is not None and err.startswith("EXPIRED"):
            self.n["expired_replies"] += 1
            if h.exp > int(rec["t1"] * 1000) + 1:
                self.problem("ALLOCATE %s answered EXPIRED %d ms before its expiry" % (h.id, h.exp - int(rec["t1"] * 1000)))
            if not possible & {"pending", "expired"}:
                self.problem("ALLOCATE %s answered EXPIRED but the hold is %s" % (h.id, possible))
            h.state, h.doubt = "expired", None
            if h.alloc is not None and h.alloc not in self.allocs:
                h.alloc = None
        else:
            self.other_error(a, err, r)

    MOVES = {"APPROVE": ("approved", {"pending_review", "approved"}),
             "REJECT": ("rejected", {"pending_review", "rejected"}),
             "SETTLE": ("settled", {"approved", "settled"})}

    def on_decision(self, a, rec, r, err):
        target, sources = self.MOVES[a[0]]
        al = self.allocs.get(a[1])
        if al is None:
            self.problem("%s of an allocation no reply announced: %s" % (a[0], a))
            return
        al.touched = al.hold.touched = True
        if "r" not in rec:
            al.doubt = (al.doubt or {al.state}) | {target}
            if target == "rejected":
                al.hold.end_early = min(al.hold.end_early or INF, rec["t0"])
            return
        possible = al.doubt or {al.state}
        if r == {"+": "OK"}:
            if not possible & sources:
                self.problem("%s %s answered OK but the allocation is %s" % (a[0], al.id, possible))
            if al.state != target:
                self.n[target] += 1
                if target == "rejected":
                    al.hold.end_early = min(al.hold.end_early or INF, rec["t0"])
                    al.hold.end_def = rec["t1"]
            al.state, al.doubt = target, None
        else:
            self.other_error(a, err, r)

    on_approve = on_reject = on_settle = on_decision

    # ------------------------------------------------------------ the server

    def connect(self):
        return redis.Redis(port=self.port, protocol=3, decode_responses=True, socket_timeout=120)

    def run(self, db, cmds, chunk=2000):
        out = []
        for i in range(0, len(cmds), chunk):
            p = db.pipeline(transaction=False)
            for c in cmds[i:i + chunk]:
                p.execute_command(*c)
            out += p.execute(raise_on_error=False)
        return out

    def free_time(self, t):
        """When an expiry at t is certainly swept: the sweep slack later, or that long after
        the restart when the server was down then."""
        for k, u in self.downtime:
            if k <= t + self.slack and t <= u:
                return u + self.slack
        return t + self.slack

    def check_hold_row(self, h, row, t_sent, t_got, resolving=False):
        """Compares a HOLD.GET row with what the replies said; returns the status read."""
        if isinstance(row, Exception):
            self.problem("HOLD.GET %s: %s (acknowledged: %s)" % (h.id, row, h.t_ack != INF))
            return None
        want = {"deal": h.deal, "investor": h.inv}
        for k, v in want.items():
            if row.get(k) != v:
                self.problem("hold %s: %s is %r, the request said %r" % (h.id, k, row.get(k), v))
        if raw(row["requested_units"]) != h.req or Decimal(row["proposed_unit_price"]) != h.price or (row["partial"] == "1") != h.partial:
            self.problem("hold %s: the row %s is not the request" % (h.id, row))
        if not resolving:
            if raw(row["units"]) != h.filled or parse_lots(row["lots"]) != h.lots or int(row["expires_at"]) != h.exp:
                self.problem("hold %s: the row (units %s, lots %s, expires %s) is not its receipt (%d, %s, %d)"
                             % (h.id, row["units"], row["lots"], row["expires_at"], h.filled, h.lots, h.exp))
        status = {"approved": "allocated"}.get(row["status"], row["status"])
        possible = h.doubt or {h.state}
        if "pending" in possible:
            possible = possible | {"expired"}
        if status not in possible:
            self.problem("hold %s is %s, the replies allow %s" % (h.id, row["status"], sorted(possible)))
        if status == "pending" and h.exp <= int(t_sent * 1000) - self.slack * 1000:
            self.problem("hold %s still pending %d ms after its expiry" % (h.id, int(t_sent * 1000) - h.exp))
        if status == "expired" and h.exp > int(t_got * 1000) + 1:
            self.problem("hold %s expired %d ms early" % (h.id, h.exp - int(t_got * 1000)))
        if status == "allocated" and h.state == "allocated" and not h.doubt and row.get("allocation") != h.alloc:
            self.problem("hold %s names allocation %s, the replies %s" % (h.id, row.get("allocation"), h.alloc))
        return status, row.get("allocation")

    def resolve(self, db, t_now):
        """Reads every object a request without reply may have changed, and takes what is
        there as the outcome, once it is one the request allows (whole or absent)."""
        # holds sent with an ID that never got a receipt
        ids = list(self.unplaced)
        rows = self.run(db, [["HOLD.GET", i] for i in ids])
        for cid, row in zip(ids, rows):
            p, first = self.unplaced.pop(cid)
            if isinstance(row, Exception):
                if not str(row).startswith("NOTFOUND"):
                    self.problem("HOLD.GET %s: %s" % (cid, row))
                self.ghosts.append((p["deal"], first, t_now, p["req"]))
                self.n["unanswered_absent"] += 1
                continue
            self.adopt(cid, p, first, row)
        # holds without ID that never got a reply: their investor is unique to them
        for key in list(self.noid):
            p, first = self.noid.pop(key)
            try:
                rows = self.statement_holds(db, key[1], key[0])
            except redis.ResponseError as e:
                self.problem("INVESTOR.STATEMENT %s: %s" % (key[1], e))
                continue
            found = [row for row in rows if row["id"] not in self.holds]
            if len(found) > 1:
                self.problem("one HOLD without ID (investor %s) placed %d holds" % (key[1], len(found)))
            if not found:
                self.ghosts.append((p["deal"], first, t_now, p["req"]))
                self.n["unanswered_absent"] += 1
            for row in found:
                self.adopt(row["id"], p, first, row)
        # holds and allocations a request without reply may have moved
        hs = [h for h in self.holds.values() if h.doubt]
        rows = self.run(db, [["HOLD.GET", h.id] for h in hs])
        t_got = time.time()
        for h, row in zip(hs, rows):
            got = self.check_hold_row(h, row, t_now, t_got)
            if got is None:
                continue
            status, aid = got
            if status == "cancelled" and h.state != "cancelled":
                h.end_def = t_now
            if status == "allocated" and aid and aid not in self.allocs:
                self.allocs[aid] = Alloc(aid, h)
                self.n["allocations"] += 1
            if status == "allocated":
                h.alloc = aid
            elif h.alloc is not None and h.alloc not in self.allocs:
                h.alloc = None
            h.state, h.doubt = status, None
        al = [x for x in self.allocs.values() if x.doubt]
        rows = self.run(db, [["ALLOCATION.GET", x.id] for x in al])
        for x, row in zip(al, rows):
            if isinstance(row, Exception):
                self.problem("ALLOCATION.GET %s: %s" % (x.id, row))
                continue
            if row["status"] not in x.doubt:
                self.problem("allocation %s is %s, the replies allow %s" % (x.id, row["status"], sorted(x.doubt)))
            if row["status"] == "rejected" and x.state != "rejected":
                x.hold.end_def = t_now
            x.state, x.doubt = row["status"], None

    def adopt(self, hid, p, first, row):
        """A hold whose request got no reply but which is there: it must be the whole request."""
        self.n["unanswered_present"] += 1
        h = Hold(hid, p, first)
        h.exp, h.lots, h.filled = int(row["expires_at"]), parse_lots(row["lots"]), raw(row["units"])
        h.state = {"approved": "allocated"}.get(row["status"], row["status"])
        if h.state != "pending" and h.state != "expired":
            self.problem("unanswered hold %s is %s: nobody moved it" % (hid, row["status"]))
        if sum(h.lots.values()) != h.filled:
            self.problem("unanswered hold %s: lots %s do not add up to %s" % (hid, row["lots"], row["units"]))
        self.validate_new(h, first, time.time())
        self.check_hold_row(h, row, 0, time.time(), resolving=True)
        self.holds[hid] = h

    # ------------------------------------------------------------ one checkpoint

    def checkpoint(self, label, final):
        started = time.time()
        self.problems = []
        self.diagnosis = []
        self.consume()
        db = self.connect()
        self.resolve(db, started)
        # Holds whose expiry is near: read before and after INVENTORY.
        now_ms = int(time.time() * 1000)
        near = [h for h in self.holds.values() if h.state == "pending" and h.exp > now_ms - self.slack * 1000 - 1000 and h.exp < now_ms + 60_000]
        before = self.run(db, [["HOLD.GET", h.id] for h in near])
        t_inv = time.time()
        deals = list(self.deal_lots)
        inventory = self.run(db, [["INVENTORY", d] for d in deals])
        after = self.run(db, [["HOLD.GET", h.id] for h in near])
        t_after = time.time()
        flux = {}
        for h, b, a in zip(near, before, after):
            gb = self.check_hold_row(h, b, t_inv, t_after)
            ga = self.check_hold_row(h, a, t_inv, t_after)
            if gb is None or ga is None:
                continue
            if gb[0] != ga[0]:
                flux[h.id] = h     # expired while INVENTORY was read: either count is right
            h.state = ga[0]
        # Pending holds past expiry by more than the sweep slack are expired.
        limit = int(t_inv * 1000) - self.slack * 1000
        for h in self.holds.values():
            if h.state == "pending" and h.exp <= limit and h.id not in flux:
                h.state = "expired"
        bad = self.compare_lots(deals, inventory, flux)
        self.explain(db, bad)
        self.sample_rows(db, final)
        figures = dict(self.n)
        if final:
            self.census(db)
            self.sellout(inventory, deals)
            figures.update(self.timeline())
        figures["holds_known"] = len(self.holds)
        figures["allocations_known"] = len(self.allocs)
        figures["check_seconds"] = round(time.time() - started, 2)
        for h in self.holds.values():
            h.touched = False
        for x in self.allocs.values():
            x.touched = False
        ok = not self.problems
        summary = "%d requests, %d answered, %d holds, %d allocations, %d refused, %d unanswered found whole / %d absent" % (
            self.n["requests"], self.n["replies"], len(self.holds), len(self.allocs), self.n["refused_insufficient"],
            self.n["unanswered_present"], self.n["unanswered_absent"])
        if self.diagnosis:
            with open(self.path + ".diagnosis.txt", "a") as f:
                f.write("== %s\n%s\n" % (label, "\n".join(self.diagnosis)))
        return {"label": label, "ok": ok, "summary": summary, "problems": self.problems[:50], "figures": figures,
                "diagnosis": self.diagnosis[:400]}

    def compare_lots(self, deals, inventory, flux):
        held = dict.fromkeys(self.lot_total, 0)
        allocated = dict.fromkeys(self.lot_total, 0)
        pending_count = dict.fromkeys(self.deal_lots, 0)
        slack_lots = {}
        for h in self.holds.values():
            if h.id in flux:   # pending at one read, expired at the next: INVENTORY may count it or not
                for lot, u in h.lots.items():
                    slack_lots[lot] = slack_lots.get(lot, 0) + u
            elif h.state == "pending":
                pending_count[h.deal] += 1
                for lot, u in h.lots.items():
                    held[lot] += u
            elif h.state == "allocated" and h.alloc in self.allocs and self.allocs[h.alloc].state != "rejected":
                for lot, u in h.lots.items():
                    allocated[lot] += u
        bad = set()
        for deal, inv in zip(deals, inventory):
            if isinstance(inv, Exception):
                self.problem("INVENTORY %s: %s" % (deal, inv))
                continue
            before = len(self.problems)
            for lot in self.deal_lots[deal]:
                f = dict(kv.split("=") for kv in inv["lot:" + lot].split())
                t, rem, hd, al = raw(f["total"]), raw(f["remaining"]), raw(f["held"]), raw(f["allocated"])
                if min(t, rem, hd, al) < 0 or t != rem + hd + al:
                    self.problem("lot %s: total %s != remaining %s + held %s + allocated %s (or negative)" % (lot, f["total"], f["remaining"], f["held"], f["allocated"]))
                if t != self.lot_total[lot]:
                    self.problem("lot %s: total %s, supply was %d" % (lot, f["total"], self.lot_total[lot]))
                d = slack_lots.get(lot, 0)
                if al != allocated[lot]:
                    self.problem("lot %s: %s allocated, the replies add up to %s" % (lot, f["allocated"], Decimal(allocated[lot]) / SCALE))
                if not held[lot] <= hd <= held[lot] + d:
                    self.problem("lot %s: %s held, the replies add up to %s" % (lot, f["held"], Decimal(held[lot]) / SCALE))
                if held[lot] + d + allocated[lot] > self.lot_total[lot]:
                    self.problem("lot %s: the replies hold and allocate %s of %s units: sold twice" % (lot, Decimal(held[lot] + allocated[lot]) / SCALE, f["total"]))
            if not flux and int(inv["holds_pending"]) != pending_count[deal]:
                self.problem("deal %s: %s pending holds, the replies count %d" % (deal, inv["holds_pending"], pending_count[deal]))
            if len(self.problems) > before:
                bad.add(deal)
        return bad

    def explain(self, db, bad):
        """For a deal whose lots disagree: the holds whose row disagrees with the replies."""
        for deal in sorted(bad)[:5]:
            hs = [h for h in self.holds.values() if h.deal == deal]
            t0 = time.time()
            rows = self.run(db, [["HOLD.GET", h.id] for h in hs])
            shown = 0
            for h, row in zip(hs, rows):
                st = None if isinstance(row, Exception) else {"approved": "allocated"}.get(row["status"], row["status"])
                if st != h.state and shown < 8:
                    shown += 1
                    self.problems.insert(0, "  deal %s: hold %s is %s on the server, %s by the replies (expires %+d ms from the read, first sent %+.3f s, acked %s, %s)" % (
                        deal, h.id, st, h.state, h.exp - int(t0 * 1000), h.t_first - t0, h.t_ack != INF, row if isinstance(row, Exception) else row["lots"]))

    def sample_rows(self, db, final):
        hs = [h for h in self.holds.values() if final or h.touched]
        if not final and len(hs) > 3000:
            hs = random.sample(hs, 3000)
        t0 = time.time()
        rows = self.run(db, [["HOLD.GET", h.id] for h in hs])
        t1 = time.time()
        for h, row in zip(hs, rows):
            self.check_hold_row(h, row, t0, t1)
        al = [x for x in self.allocs.values() if final or x.touched]
        rows = self.run(db, [["ALLOCATION.GET", x.id] for x in al])
        for x, row in zip(al, rows):
            if isinstance(row, Exception):
                self.problem("ALLOCATION.GET %s: %s" % (x.id, row))
                continue
            if row["status"] != x.state or row["hold"] != x.hold.id or raw(row["units"]) != x.hold.filled or row["investor"] != x.hold.inv:
                self.problem("allocation %s: row %s/%s/%s/%s, the replies %s/%s/%d/%s" % (
                    x.id, row["status"], row["hold"], row["units"], row["investor"], x.state, x.hold.id, x.hold.filled, x.hold.inv))

    def statement_holds(self, db, inv, deal=None):
        """Every hold row of an investor (in one deal), following the cursor: a page
        examines at most 10 000 rows and may hold none with a cursor to go on from."""
        rows, cursor = [], "0"
        while True:
            page = db.execute_command("INVESTOR.STATEMENT", inv, *(["DEAL", deal] if deal else []), "PART", "holds", "CURSOR", cursor, "COUNT", "1000")
            cursor = page[0]
            rows += page[1]
            if cursor == "0":
                return rows

    def census(self, db):
        """Every hold the server has for the investors of caller-id holds is one the
        replies account for (a retry booked twice would show up here)."""
        known = {}
        for h in self.holds.values():
            if not h.inv.startswith("n"):
                known.setdefault(h.inv, set()).add(h.id)
        for inv, ids in known.items():
            seen = set()
            for row in self.statement_holds(db, inv):
                if row["id"] in seen:
                    self.problem("census: hold %s listed twice for %s" % (row["id"], inv))
                seen.add(row["id"])
            if seen != ids:
                self.problem("census of %s: unknown holds %s, missing %s" % (inv, sorted(seen - ids)[:5], sorted(ids - seen)[:5]))

    def sellout(self, inventory, deals):
        """After the drain of a sell-out deal: nothing remains and the supply is all held
        or allocated, exactly."""
        for deal, inv in zip(deals, inventory):
            if deal not in self.scarce or isinstance(inv, Exception):
                continue
            recs = self.drains.get(deal, [])
            if len(recs) != 2:
                self.problem("sell-out deal %s: %d drain requests in the journal" % (deal, len(recs)))
                continue
            # Units that came back after the drain (a hold expiring later) are the only excuse.
            back = sum(h.filled for h in self.holds.values() if h.deal == deal and h.state == "expired" and h.exp >= recs[0]["t0"] * 1000 - self.slack * 1000)
            rem = raw(inv["units_remaining"])
            if rem > back:
                self.problem("sell-out deal %s: %s remaining after the drain (%s came back from expiries)" % (deal, inv["units_remaining"], Decimal(back) / SCALE))
            r2 = recs[1].get("r")
            if not (isinstance(r2, dict) and r2.get("-", "").startswith("INSUFFICIENT")) and back == 0:
                self.problem("sell-out deal %s: the second drain hold got %s, not a refusal" % (deal, r2))
            total = sum(self.lot_total[l] for l in self.deal_lots[deal])
            sold = raw(inv["units_held"]) + raw(inv["units_allocated"])
            if rem == 0 and sold != total:
                self.problem("sell-out deal %s: %d of %d sold" % (deal, sold, total))

    @staticmethod
    def earliest_free(h):
        """The earliest moment a hold's units may have come back: a RELEASE or REJECT
        sent (answered or not), or, for a hold that was never allocated, its expiry,
        whichever is first. (A RELEASE lost at a kill long after the expiry does not
        move the expiry: the sweep freed the units then.)"""
        early = h.end_early if h.end_early is not None else INF
        if h.state in ("pending", "expired"):
            early = min(early, h.exp / 1000 - 0.002)
        return early

    def timeline(self):
        """Refusals and placements against the units certainly free / certainly taken,
        from the reply times alone.

        A hold's units are possibly taken from the moment its request was sent until
        they are certainly free again: the reply to its RELEASE or to the REJECT of its
        allocation, or its expiry plus the sweep slack (after the restart, when the
        server was down then); an unanswered hold found absent until the checkpoint
        that found it. They are certainly taken from its receipt until the earliest
        moment they may have come back (a RELEASE or REJECT sent, its expiry).

        For a request sent at t0 and answered at t1, the engine decided it at some
        instant in [t0, t1], when the units free were at least
            supply - (units of holds sent before t1 and not certainly free by t0)
        and at most
            supply - (units of holds received before t0 and not possibly free by t1).
        A refusal of X units is wrong if X <= the lower bound (PARTIAL: if it is > 0);
        the 'available' it names must lie within the bounds; a placement must fit in
        the upper bound; a PARTIAL hold filled short must have taken at least the lower
        bound."""
        per = {}
        for h in self.holds.values():
            end = h.end_def
            if end is None and h.state in ("pending", "expired"):
                end = self.free_time(h.exp / 1000)
            early = self.earliest_free(h)
            if h.state == "allocated" and h.end_def is None:
                end = INF
            per.setdefault(h.deal, []).append((h.t_first, INF if end is None else end, h.t_ack, early, h.filled))
        for deal, start, end, u in self.ghosts:
            per.setdefault(deal, []).append((start, end, INF, INF, u))
        index = {}
        for deal, rows in per.items():
            def cum(keys):
                keys.sort()
                ts, acc, s = [], [], 0
                for t, u in keys:
                    ts.append(t); s += u; acc.append(s)
                return ts, acc
            index[deal] = (cum([(r[0], r[4]) for r in rows]), cum([(r[1], r[4]) for r in rows if r[1] != INF]),
                           cum([(r[2], r[4]) for r in rows if r[2] != INF]), cum([(r[3], r[4]) for r in rows if r[3] != INF]))

        def upto(c, t, strict):
            ts, acc = c
            i = bisect.bisect_left(ts, t) if strict else bisect.bisect_right(ts, t)
            return acc[i - 1] if i else 0

        supply = {d: sum(self.lot_total[l] for l in lots) for d, lots in self.deal_lots.items()}

        def bounds(deal, t0, t1):
            if deal not in index:
                return supply[deal], supply[deal]
            starts, ends, acks, earlies = index[deal]
            possibly = upto(starts, t1, True) - upto(ends, t0, False)
            certainly = upto(acks, t0, False) - upto(earlies, t1, True)
            return supply[deal] - possibly, supply[deal] - max(0, certainly)

        explained = set()

        def diagnose(deal, t0, t1, what):
            """The holds the bound counts as certainly taken at [t0, t1]: acknowledged by
            t0 and not possibly free before t1. When the bound is wrong, one of these
            was free (its trail says what the replies knew of it)."""
            if deal in explained or len(explained) >= 2:
                return
            explained.add(deal)
            certain = []
            for h in self.holds.values():
                if h.deal != deal or h.t_ack > t0:
                    continue
                early = self.earliest_free(h)
                if early >= t1:
                    certain.append((early, h))
            certain.sort(key=lambda x: (x[0], x[1].t_ack))
            by_state = {}
            for _, h in certain:
                by_state[h.state] = by_state.get(h.state, 0) + h.filled
            lines = ["timeline diagnosis, deal %s, %s in [%.6f, %.6f]: supply %s; certainly taken %s by state %s; wall clock moved %.1f ms against monotonic" % (
                deal, what, t0, t1, Decimal(supply[deal]) / SCALE, Decimal(sum(h.filled for _, h in certain)) / SCALE,
                {k: str(Decimal(v) / SCALE) for k, v in by_state.items()}, self.clock_steps() * 1000)]
            for early, h in certain[:12] + ([] if len(certain) <= 24 else [(None, None)]) + certain[max(12, len(certain) - 12):]:
                if h is None:
                    lines.append("  ...")
                    continue
                lines.append("  hold %s %s units, %s, acked %.6f, free earliest %s, exp %.3f, alloc %s" % (
                    h.id, Decimal(h.filled) / SCALE, h.state, h.t_ack, "never" if early == INF else "%.6f" % early, h.exp / 1000,
                    "%s/%s" % (h.alloc, self.allocs[h.alloc].state) if h.alloc in self.allocs else h.alloc))
                for t in self.trail.get(h.id, [])[:6]:
                    lines.append("      " + t)
            self.diagnosis.extend(lines)

        wrong = 0
        for deal, t0, t1, req, partial, avail in self.refusals:
            lo, hi = bounds(deal, t0, t1)
            if (partial and lo > 0) or (not partial and req <= lo):
                wrong += 1
                self.problem("refused while units remained: deal %s, %s units requested, at least %s free in [%.6f, %.6f]" % (
                    deal, Decimal(req) / SCALE, Decimal(lo) / SCALE, t0, t1))
            elif not lo <= avail <= hi:
                diagnose(deal, t0, t1, "refusal saying %s available" % (Decimal(avail) / SCALE))
                self.problem("refusal in deal %s says %s available; the replies bound it to [%s, %s]" % (
                    deal, Decimal(avail) / SCALE, Decimal(lo) / SCALE, Decimal(hi) / SCALE))
        oversold = 0
        for h in self.placements:
            lo, hi = bounds(h.deal, h.ack_t0, h.t_ack)
            if h.filled > hi:   # its own units are in neither bound's 'certainly taken'
                oversold += 1
                diagnose(h.deal, h.ack_t0, h.t_ack, "placement of %s (%s units)" % (h.id, Decimal(h.filled) / SCALE))
                self.problem("hold %s of %s units placed when at most %s were free" % (h.id, Decimal(h.filled) / SCALE, Decimal(hi) / SCALE))
            if h.partial and h.filled < h.req and lo > 0:   # it should have taken everything left
                self.problem("PARTIAL hold %s took %s, at least %s were free" % (h.id, Decimal(h.filled) / SCALE, Decimal(lo + h.filled) / SCALE))
        return {"refusals_judged": len(self.refusals), "refused_while_units_remained": wrong, "placements_judged": len(self.placements),
                "oversold_placements": oversold, "wall_clock_step_ms": round(self.clock_steps() * 1000, 3)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--journal", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--serve", action="store_true", help="answer check/final lines on stdin")
    p.add_argument("--sweep-slack", type=float, default=2.0, help="seconds an expired hold may stay pending (the sweep runs every 100 ms)")
    p.add_argument("--verbose", action="store_true")
    o = p.parse_args()
    c = Checker(o.journal, o.port, o.sweep_slack, o.verbose)
    if not o.serve:
        v = c.checkpoint("final", True)
        print(json.dumps(v, indent=2))
        sys.exit(0 if v["ok"] else 1)
    for line in sys.stdin:
        kind, _, label = line.strip().partition(" ")
        try:
            v = c.checkpoint(label, kind == "final")
        except Exception as e:   # a crash of the checker is a failed check, not a hang
            import traceback
            v = {"label": label, "ok": False, "summary": "checker error", "problems": [traceback.format_exc()]}
        sys.stdout.write(json.dumps(v) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
