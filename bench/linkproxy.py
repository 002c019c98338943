#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""A TCP proxy that emulates a slow link where tc netem is not available (no sch_netem module):
one-way delay RTT/2 in each direction, one rate cap per direction shared by all connections
(one FIFO, as a bottleneck with a deep buffer behaves), and one RTT before a new connection
carries data (its handshake). Python's pacing adds a little of its own; compare binaries under
the same proxy, not with other emulations.

Usage: bench/linkproxy.py LISTEN_PORT UPSTREAM_HOST:PORT MBIT_PER_S RTT_MS
Prints "ready" once listening on 127.0.0.1:LISTEN_PORT."""

import asyncio
import sys
import time


class Link:
    """One direction of the bottleneck: bytes leave one after another at the rate."""

    def __init__(self, rate):
        self.rate = rate
        self.free_at = 0.0

    def departure(self, n):
        start = max(time.monotonic(), self.free_at)
        self.free_at = start + n / self.rate
        return self.free_at


async def pipe(reader, writer, link, delay):
    q = asyncio.Queue()

    async def receive():
        while True:
            data = await reader.read(65536)
            if not data:
                await q.put(None)
                return
            await q.put((link.departure(len(data)) + delay, data))

    async def send():
        while True:
            item = await q.get()
            if item is None:
                try:
                    writer.write_eof()
                except OSError:
                    pass
                return
            when, data = item
            wait = when - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    await asyncio.gather(receive(), send(), return_exceptions=True)


def main():
    port, upstream, mbit, rtt_ms = sys.argv[1:5]
    host, uport = upstream.rsplit(":", 1)
    rate = float(mbit) * 1e6 / 8
    rtt = float(rtt_ms) / 1000
    up, down = Link(rate), Link(rate)

    async def handle(cr, cw):
        await asyncio.sleep(rtt)  # the handshake
        try:
            ur, uw = await asyncio.open_connection(host, int(uport))
        except OSError:
            cw.close()
            return
        await asyncio.gather(pipe(cr, uw, up, rtt / 2), pipe(ur, cw, down, rtt / 2),
                             return_exceptions=True)
        for w in (cw, uw):
            w.close()

    async def serve():
        srv = await asyncio.start_server(handle, "127.0.0.1", int(port))
        print("ready", flush=True)
        async with srv:
            await srv.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
