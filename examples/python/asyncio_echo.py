"""asyncio_echo.py ADDR: an asyncio streams echo server on ADDR
(HOST:PORT), serving many connections at once on sockshim's selector.
Prints `listening on ADDR`.
Run: sockshim run --allow-bind 127.0.0.1:7001 asyncio_echo.wasm 127.0.0.1:7001"""

import sockshim; sockshim.install()  # noqa: E702

import asyncio
import sys


async def handle(reader, writer):
    while line := await reader.readline():
        writer.write(line)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def main(host, port):
    server = await asyncio.start_server(handle, host, port)
    h, p = server.sockets[0].getsockname()[:2]
    print("listening on %s:%d" % (h, p), flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    host, _, port = sys.argv[1].rpartition(":")
    asyncio.run(main(host, int(port)))
