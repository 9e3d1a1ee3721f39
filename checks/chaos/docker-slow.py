#!/usr/bin/env python3
"""A Unix-socket proxy in front of the Docker engine that delays every API call (checks/chaos.sh,
fault docker-slow).

    docker-slow.py LISTEN_SOCKET [UPSTREAM_SOCKET] [DELAY_FILE]

Each chunk a client sends (a request, or part of one) is held for the delay before it goes on to
UPSTREAM_SOCKET (default /var/run/docker.sock); replies pass straight through. The delay, in
seconds, is read from DELAY_FILE (default LISTEN_SOCKET.delay; missing or bad = 0) for every
chunk, so a running proxy is slowed down and sped up by writing that file. The socket is made
mode 0660 like Docker's own. Stops on SIGTERM/SIGINT and removes its socket.
"""
import asyncio
import os
import signal
import sys


def delay(path):
    try:
        with open(path) as f:
            return max(0.0, float(f.read().strip() or 0))
    except (OSError, ValueError):
        return 0.0


async def pipe(reader, writer, delay_file=None):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if delay_file:
                d = delay(delay_file)
                if d:
                    await asyncio.sleep(d)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main():
    listen = sys.argv[1]
    upstream = sys.argv[2] if len(sys.argv) > 2 else "/var/run/docker.sock"
    delay_file = sys.argv[3] if len(sys.argv) > 3 else listen + ".delay"

    async def handle(cr, cw):
        try:
            ur, uw = await asyncio.open_unix_connection(upstream)
        except OSError as e:
            print(f"docker-slow: upstream {upstream}: {e}", file=sys.stderr, flush=True)
            cw.close()
            return
        await asyncio.gather(pipe(cr, uw, delay_file), pipe(ur, cw))

    if os.path.exists(listen):
        os.unlink(listen)
    server = await asyncio.start_unix_server(handle, path=listen)
    os.chmod(listen, 0o660)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    print(f"docker-slow: {listen} -> {upstream}, delay from {delay_file}", file=sys.stderr, flush=True)
    async with server:
        await stop.wait()
    os.unlink(listen)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    asyncio.run(main())
