#!/usr/bin/env python3
"""Re-verifies the engine's audit chain from AUDIT.LIST alone (docs/wal-format.md).
Usage: verify_audit.py [port] [password]. Prints the head; exits 1 at the first broken link."""
import hashlib, struct, sys, redis

r = redis.Redis(port=int(sys.argv[1]) if len(sys.argv) > 1 else 7379,
                password=sys.argv[2] if len(sys.argv) > 2 else None, decode_responses=True)
prev, cursor, n = None, "0", 0
while True:
    nxt, rows = r.execute_command("AUDIT.LIST", "CURSOR", cursor, "COUNT", 1000)
    for e in (dict(zip(x[::2], x[1::2])) if isinstance(x, list) else x for x in rows):
        if prev is not None and bytes.fromhex(e["prev_hash"]) != prev: sys.exit(f"entry {e['seq']}: prev_hash does not link")
        entry = struct.pack(">QqB", int(e["seq"]), int(e["ts"]), int(e["type"])) + bytes.fromhex(e["change_sha256"])
        prev = hashlib.sha256(bytes.fromhex(e["prev_hash"]) + entry).digest()
        if prev.hex() != e["hash"]: sys.exit(f"entry {e['seq']}: hash does not match its fields")
        # The payload's digest covers action, entity, entity_id and actor (functions of the change).
        n += 1
    if nxt == "0": break
    cursor = nxt
print(f"OK {n} {prev.hex() if prev else ''}")
