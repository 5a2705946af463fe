"""An honest ngrok agent for the tests: the PyPI ``ngrok`` SDK, forwarding one HTTP endpoint
to a service the test runs (unlike sdk_agent.py, which forwards to services of its own).

Usage: python honest_agent.py CONFIG_JSON with ``token``, ``server_addr``, ``ca``,
``domain`` and ``forward`` (the local service's URL). Prints one JSON line,
``{"ready": {"web": {"url", "id"}}}`` or ``{"error": [...]}``, then runs until its stdin
closes. This file runs under the SDK's interpreter and imports nothing from Burrow.
"""

import asyncio
import contextlib
import json
import sys
from pathlib import Path

from ngrok import ngrok

config = json.loads(sys.argv[1])


def emit(message: object) -> None:
    print(json.dumps(message), flush=True)


async def main() -> None:
    try:
        session = await (
            ngrok.SessionBuilder()
            .authtoken(config["token"])
            .server_addr(config["server_addr"])
            .ca_cert(bytearray(Path(config["ca"]).read_bytes()))
            .connect()
        )
        listener = await (
            session.http_endpoint()
            .scheme("HTTP")
            .domain(config["domain"])
            .listen_and_forward(config["forward"])
        )
    except Exception as error:  # the SDK raises ValueError(message, detail, code)
        emit({"error": [str(arg) for arg in error.args]})
        return
    emit({"ready": {"web": {"url": listener.url(), "id": listener.id()}}})
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(session.close(), 2)


asyncio.run(main())
