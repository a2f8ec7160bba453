#!/usr/bin/env python3
"""Offline tests of the checker's timeline bound (no server): journals small enough
to reason about by hand, each a case the bound once got wrong or must catch.

    python3 Benchmarks/launch/test_check.py      (run by LaunchSimulationTests)
"""
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check  # noqa: E402

T = 1_000_000.0   # seconds: an arbitrary origin


def journal(lines):
    f = tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False)
    f.write(json.dumps({"ev": "setup", "t": T, "deals": [{"deal": "d", "scarce": True, "lots": [["d-l", "10"]]}], "clients": 2, "seed": 1}) + "\n")
    for rec in lines:
        f.write(json.dumps(rec) + "\n")
    f.close()
    return f.name


def hold(c, hid, inv, t0, t1, ttl, units="10"):
    a = ["HOLD", "d", inv, units, "28.5", "TTL", str(ttl), "ID", hid]
    return {"c": c, "a": a, "t0": T + t0, "t1": T + t1, "r": [hid, int((T + t0) * 1000) + ttl * 1000, ["d-l", units]]}


def verdict(lines):
    path = journal(lines)
    try:
        c = check.Checker(path, 0, 2.0, False)
        c.consume()
        figures = c.timeline()
        return figures, c.problems
    finally:
        os.unlink(path)


class TimelineTests(unittest.TestCase):
    def test_release_lost_at_a_kill_after_the_expiry_does_not_hide_the_expiry(self):
        # Hold a (all 10 units, TTL 1 s) expires at +1.0; b takes the 10 units at +3.0;
        # a RELEASE of a sent at +4.9 is lost at the kill, retried after the restart,
        # answered EXPIRED. The units were free from +1.0: b is no oversell. (The CI
        # failure of 2026-12-02: the lost RELEASE's send time was taken as a's
        # earliest free moment.)
        figures, problems = verdict([
            hold(0, "a", "i0", 0.0, 0.01, 1),
            hold(1, "b", "i1", 3.0, 3.01, 3600),
            {"c": 0, "a": ["RELEASE", "a"], "t0": T + 4.9, "nr": "dropped:IncompleteReadError"},
            {"ev": "kill", "t": T + 5.0},
            {"ev": "up", "t": T + 6.0},
            {"c": 0, "a": ["RELEASE", "a"], "t0": T + 6.5, "t1": T + 6.51, "r": {"-": "EXPIRED hold a expired at %d" % int((T + 1.0) * 1000)}},
        ])
        self.assertEqual(figures["oversold_placements"], 0, problems)
        self.assertEqual(problems, [])

    def test_a_real_oversell_is_caught(self):
        # The same, but a lives an hour: b's 10 units were taken twice.
        figures, problems = verdict([
            hold(0, "a", "i0", 0.0, 0.01, 3600),
            hold(1, "b", "i1", 3.0, 3.01, 3600),
        ])
        self.assertEqual(figures["oversold_placements"], 1, problems)

    def test_a_release_sent_before_the_placement_frees_the_units(self):
        figures, problems = verdict([
            hold(0, "a", "i0", 0.0, 0.01, 3600),
            {"c": 0, "a": ["RELEASE", "a"], "t0": T + 2.0, "t1": T + 2.01, "r": {"+": "OK"}},
            hold(1, "b", "i1", 3.0, 3.01, 3600),
        ])
        self.assertEqual(figures["oversold_placements"], 0, problems)

    def test_a_refusal_while_units_were_certainly_free_is_caught(self):
        # Nothing is held at +1.0, yet a hold of 5 is refused.
        figures, problems = verdict([
            {"c": 1, "a": ["HOLD", "d", "i1", "5", "28.5", "TTL", "3600", "ID", "x"], "t0": T + 1.0, "t1": T + 1.01,
             "r": {"-": "INSUFFICIENT requested 5, available 0"}},
        ])
        self.assertEqual(figures["refused_while_units_remained"], 1, problems)


if __name__ == "__main__":
    unittest.main(verbosity=2)
