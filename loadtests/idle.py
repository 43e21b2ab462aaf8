"""Idle connections: opens N pgwire sessions (startup to ReadyForQuery, then silence) and M
Flight clients (a handshake each, on its own HTTP/2 connection) to a running tidemark and
prints tidemark's resident memory before and after, per connection. A benchmark, not a test.

    python loadtests/idle.py --pid PID --pg-port P --flight-port F [--pg 10000] [--flight 1000]
"""

import argparse
import asyncio
import struct
import time


def rss_kib(pid):
    """Resident set size of process `pid` in KiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def settled_rss(pid, secs=3.0):
    """RSS once it stops moving (the allocator returns memory lazily)."""
    time.sleep(secs)
    return rss_kib(pid)


def startup_message(user, database):
    body = struct.pack("!i", 196608)
    body += f"user\0{user}\0database\0{database}\0\0".encode()
    return struct.pack("!i", len(body) + 4) + body


async def pg_session(port, database, hold):
    """One pgwire session through startup; kept open in `hold`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(startup_message("postgres", database))
    await writer.drain()
    while True:
        tag = await reader.readexactly(1)
        (length,) = struct.unpack("!i", await reader.readexactly(4))
        body = await reader.readexactly(length - 4)
        if tag == b"E":
            raise RuntimeError(f"startup refused: {body!r}")
        if tag == b"Z":
            break
    hold.append((reader, writer))


async def open_pg(port, database, n):
    hold = []
    gate = asyncio.Semaphore(200)

    async def one():
        async with gate:
            await pg_session(port, database, hold)

    await asyncio.gather(*(one() for _ in range(n)))
    return hold


def open_flight(port, n):
    import pyarrow.flight as flight

    clients = []
    for _ in range(n):
        # a channel of its own (gRPC would otherwise share one connection between clients)
        c = flight.FlightClient(
            f"grpc://127.0.0.1:{port}",
            generic_options=[("grpc.use_local_subchannel_pool", 1)],
        )
        c.authenticate_basic_token("postgres", "")
        clients.append(c)
    return clients


def report(what, n, before, after):
    per = (after - before) / n if n else 0.0
    print(f"| {what} | {n} | {before / 1024:.1f} | {after / 1024:.1f} | {per:.1f} |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--pg-port", type=int, required=True)
    ap.add_argument("--flight-port", type=int, required=True)
    ap.add_argument("--database", default="postgres")
    ap.add_argument("--pg", type=int, default=10000)
    ap.add_argument("--flight", type=int, default=1000)
    a = ap.parse_args()
    print("| idle clients | count | RSS before MiB | RSS after MiB | KiB per client |")
    print("|---|---|---|---|---|")
    before = settled_rss(a.pid)
    loop = asyncio.new_event_loop()
    held = loop.run_until_complete(open_pg(a.pg_port, a.database, a.pg))
    report("pgwire sessions (after startup)", len(held), before, settled_rss(a.pid))
    before = settled_rss(a.pid, 0)
    clients = open_flight(a.flight_port, a.flight)
    report("Flight SQL clients (after handshake)", len(clients), before, settled_rss(a.pid))
    for _, w in held:
        w.close()
    for c in clients:
        c.close()


if __name__ == "__main__":
    main()
