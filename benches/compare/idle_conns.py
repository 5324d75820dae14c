#!/usr/bin/env python3
"""Idle keep-alive connections for benches/compare.sh (memory phase).

Opens COUNT connections to HOST:PORT (TLS with --tls), sends one GET PATH on each and reads the
whole answer (so that the server has set up what a used keep-alive connection keeps), writes
the number of connections that got a 200 to READY_FILE, then holds them all open, idle, until
it gets SIGTERM/SIGINT. Standard library only (asyncio, ssl).

  idle_conns.py HOST PORT COUNT PATH READY_FILE [--tls CAFILE SERVERNAME]
"""
import asyncio
import signal
import ssl
import sys


async def one(host, port, path, ctx, servername, conns, sem):
    async with sem:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ctx, server_hostname=servername if ctx else None)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {servername or host}\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length:
            await reader.readexactly(length)
        conns.append((reader, writer))
        return status == b"200"


async def main():
    host, port, count, path, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    ctx = servername = None
    if len(sys.argv) > 6 and sys.argv[6] == "--tls":
        ctx = ssl.create_default_context(cafile=sys.argv[7])
        ctx.set_alpn_protocols(["http/1.1"])
        servername = sys.argv[8]
    conns = []
    # At most 100 handshakes at a time (the listen backlogs are larger).
    sem = asyncio.Semaphore(100)
    results = await asyncio.gather(
        *(one(host, port, path, ctx, servername, conns, sem) for _ in range(count)),
        return_exceptions=True)
    ok = sum(1 for r in results if r is True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        print(f"{len(errors)} connections failed, first: {errors[0]!r}", file=sys.stderr)
    with open(ready, "w") as f:
        f.write(f"{ok}\n")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for _, writer in conns:
        writer.close()


if __name__ == "__main__":
    asyncio.run(main())
