"""A bare aiosmtpd sink with a do-nothing handler: the baseline the lab's ingest is measured against.

Served the way the lab serves (loop.create_server, a fixed hostname), so the comparison is fair.
Run: `python bench/bare_sink.py PORT`.
"""

from __future__ import annotations

import asyncio
import sys

from aiosmtpd.smtp import SMTP


class Nothing:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Nothing(), hostname="bare.localhost", loop=loop),
                                      "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
