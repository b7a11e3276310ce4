#!/usr/bin/env python3
"""Open N idle, authenticated PostgreSQL client connections and measure the
RSS growth of the process serving them (a proxy: PgBouncer or tidepool).

Speaks the v3 startup + authentication handshake by hand with asyncio
(trust, cleartext, md5 and SCRAM-SHA-256), so 10,000 connections fit in one
process on 2 cores. Each connection waits for ReadyForQuery, then stays
idle. At the end a sample of the connections runs `SELECT 1` to prove they
are usable, then all are closed.

Prints one JSON object on stdout:
  {"target", "clients", "connected", "failed", "rss_before_kb",
   "rss_after_kb", "rss_delta_per_client_bytes", "connect_seconds",
   "sample_ok", "sample_total", "errors": {...}}

Stdlib only. Needs `ulimit -n` > N (+ a few).
"""

import argparse
import asyncio
import base64
import collections
import hashlib
import hmac
import json
import os
import struct
import sys
import time


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def total_rss_kb(pids):
    return sum(rss_kb(p) for p in pids)


class PgError(Exception):
    pass


_salted_cache = {}


def scram_salted(password, salt, iters):
    key = (password, salt, iters)
    v = _salted_cache.get(key)
    if v is None:
        v = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iters)
        if len(_salted_cache) < 1024:
            _salted_cache[key] = v
    return v


async def read_msg(reader):
    hdr = await reader.readexactly(5)
    typ = hdr[0:1]
    (length,) = struct.unpack("!I", hdr[1:5])
    body = await reader.readexactly(length - 4) if length > 4 else b""
    return typ, body


def msg(typ, body):
    return typ + struct.pack("!I", len(body) + 4) + body


def error_text(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return f"{fields.get('S', 'ERROR')} {fields.get('C', '')}: {fields.get('M', '')}"


async def handshake(host, port, user, password, database, app):
    reader, writer = await asyncio.open_connection(host, port)
    try:
        params = b"".join(
            k.encode() + b"\0" + v.encode() + b"\0"
            for k, v in (("user", user), ("database", database), ("application_name", app))
        ) + b"\0"
        body = struct.pack("!I", 196608) + params
        writer.write(struct.pack("!I", len(body) + 4) + body)
        await writer.drain()
        scram = None
        while True:
            typ, body = await read_msg(reader)
            if typ == b"E":
                raise PgError(error_text(body))
            if typ == b"Z":
                return reader, writer
            if typ != b"R":
                continue  # ParameterStatus, BackendKeyData, NoticeResponse
            (code,) = struct.unpack("!I", body[:4])
            if code == 0:
                continue
            if code == 3:  # cleartext
                writer.write(msg(b"p", password.encode() + b"\0"))
            elif code == 5:  # md5
                salt = body[4:8]
                inner = hashlib.md5((password + user).encode()).hexdigest().encode()
                outer = "md5" + hashlib.md5(inner + salt).hexdigest()
                writer.write(msg(b"p", outer.encode() + b"\0"))
            elif code == 10:  # SASL
                mechs = [m for m in body[4:].split(b"\0") if m]
                if b"SCRAM-SHA-256" not in mechs:
                    raise PgError(f"no supported SASL mechanism in {mechs}")
                nonce = base64.b64encode(os.urandom(18)).decode()
                first_bare = f"n=,r={nonce}"
                first = ("n,," + first_bare).encode()
                writer.write(
                    msg(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first)
                )
                scram = (nonce, first_bare)
            elif code == 11:  # SASLContinue
                nonce, first_bare = scram
                server_first = body[4:].decode()
                attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
                if not attrs["r"].startswith(nonce):
                    raise PgError("SCRAM nonce mismatch")
                salted = scram_salted(password, base64.b64decode(attrs["s"]), int(attrs["i"]))
                client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
                stored_key = hashlib.sha256(client_key).digest()
                final_wo_proof = f"c=biws,r={attrs['r']}"
                auth_msg = f"{first_bare},{server_first},{final_wo_proof}".encode()
                sig = hmac.new(stored_key, auth_msg, hashlib.sha256).digest()
                proof = bytes(a ^ b for a, b in zip(client_key, sig))
                final = f"{final_wo_proof},p={base64.b64encode(proof).decode()}"
                writer.write(msg(b"p", final.encode()))
            elif code == 12:  # SASLFinal (server signature not verified: not needed here)
                continue
            else:
                raise PgError(f"unsupported auth request {code}")
            await writer.drain()
    except BaseException:
        writer.close()
        raise


async def simple_query(reader, writer, sql):
    writer.write(msg(b"Q", sql.encode() + b"\0"))
    await writer.drain()
    ok = False
    while True:
        typ, body = await read_msg(reader)
        if typ == b"E":
            ok = False
        elif typ == b"C":
            ok = True
        elif typ == b"Z":
            return ok


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", default="bench")
    ap.add_argument("--password", default="bench")
    ap.add_argument("--database", default="bench")
    ap.add_argument("--clients", type=int, default=10000)
    ap.add_argument("--pid", type=int, action="append", default=[],
                    help="process(es) whose RSS is measured (repeatable)")
    ap.add_argument("--concurrency", type=int, default=64,
                    help="handshakes in flight at once")
    ap.add_argument("--settle", type=float, default=2.0,
                    help="seconds to wait after connecting before reading RSS")
    ap.add_argument("--sample", type=int, default=200, help="connections that run SELECT 1")
    ap.add_argument("--timeout", type=float, default=600.0, help="overall connect deadline")
    ap.add_argument("--target", default="")
    args = ap.parse_args()

    # Warm the target (first login may set up pools, caches...).
    r, w = await handshake(args.host, args.port, args.user, args.password, args.database, "idle-warmup")
    await simple_query(r, w, "SELECT 1")
    w.close()
    await asyncio.sleep(0.5)
    rss_before = total_rss_kb(args.pid)

    sem = asyncio.Semaphore(args.concurrency)
    conns = []
    errors = collections.Counter()

    async def one(i):
        async with sem:
            for attempt in range(3):
                try:
                    conns.append(await handshake(args.host, args.port, args.user,
                                                 args.password, args.database, "idle"))
                    return
                except (OSError, asyncio.IncompleteReadError, PgError) as e:
                    key = f"{type(e).__name__}: {e}"[:120]
                    if attempt == 2:
                        errors[key] += 1
                    else:
                        await asyncio.sleep(0.2 * (attempt + 1))

    t0 = time.monotonic()
    tasks = [asyncio.create_task(one(i)) for i in range(args.clients)]
    done, pending = await asyncio.wait(tasks, timeout=args.timeout)
    for t in pending:
        t.cancel()
    if pending:
        errors["timeout"] += len(pending)
    connect_seconds = time.monotonic() - t0

    await asyncio.sleep(args.settle)
    rss_after = total_rss_kb(args.pid)

    # Are the idle connections still alive and usable?
    step = max(1, len(conns) // max(1, args.sample))
    sample = conns[::step][: args.sample]
    results = await asyncio.gather(*(simple_query(r, w, "SELECT 1") for r, w in sample),
                                   return_exceptions=True)
    sample_ok = sum(1 for x in results if x is True)

    for r, w in conns:
        w.write(msg(b"X", b""))
        w.close()
    await asyncio.sleep(0.5)

    n = len(conns)
    out = {
        "target": args.target,
        "clients": args.clients,
        "connected": n,
        "failed": args.clients - n,
        "rss_before_kb": rss_before,
        "rss_after_kb": rss_after,
        "rss_delta_per_client_bytes": round((rss_after - rss_before) * 1024 / n) if n else None,
        "connect_seconds": round(connect_seconds, 2),
        "sample_ok": sample_ok,
        "sample_total": len(sample),
        "errors": dict(errors.most_common(5)),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
