"""An ngrok agent for the tests: the PyPI ``ngrok`` SDK, run in its own environment.

Usage: python sdk_agent.py CONFIG_JSON. It starts local services (HTTP, TCP echo, TLS
echo), opens a session and the endpoints the config asks for, prints one JSON line
``{"ready": {name: {"url", "id"} or {"error", "args"}}}`` (or ``{"error": ...}`` if the
session fails), then runs until its stdin closes, printing session events as JSON lines
(``{"event": "disconnected", ...}``, ``{"event": "tunnel stopped", "id": ...}``).
This file runs under the SDK's interpreter and imports nothing from Burrow.
"""

import asyncio
import base64
import contextlib
import hashlib
import http.server
import json
import logging
import socketserver
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ngrok import ngrok

config = json.loads(sys.argv[1])


class HttpService(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body are separate writes: with Nagle's algorithm on, the body would wait for
    # the SDK's delayed ACK (40 ms), which is this test service's latency, not the edge's.
    disable_nagle_algorithm = True

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:
        if self.headers.get("Upgrade", "").lower() == "websocket":
            self.websocket_echo()
            return
        if self.path.startswith("/sleep/"):  # a slow answer: after that many seconds
            time.sleep(float(self.path.split("/")[2]))
        if self.path.startswith("/status/"):  # an answer with that status
            self.send_response(int(self.path.split("/")[2]))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/bytes/"):
            size = int(self.path.split("/")[2])
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if head:
                return
            block = bytes(range(256)) * 4096
            sent = 0
            while sent < size:
                chunk = block[: min(len(block), size - sent)]
                self.wfile.write(chunk)
                sent += len(chunk)
            return
        answer = {"service": config.get("label", "http"), "path": self.path, "host": self.headers.get("Host")}
        if self.path.startswith("/headers"):
            answer["headers"] = [[name, value] for name, value in self.headers.items()]
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        digest = hashlib.sha256()
        received = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunk = self.rfile.read(size)
                digest.update(chunk)
                received += len(chunk)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
        else:
            remaining = int(self.headers["Content-Length"])
            while remaining:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                digest.update(chunk)
                received += len(chunk)
                remaining -= len(chunk)
        body = json.dumps(
            {
                "received": received,
                "sha256": digest.hexdigest(),
                "framing": "chunked" if self.headers.get("Transfer-Encoding") else "length",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def websocket_echo(self) -> None:
        """The WebSocket handshake, then every byte echoed back (frames are not decoded)."""
        key = self.headers["Sec-WebSocket-Key"].encode()
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept.decode())
        self.end_headers()
        self.wfile.flush()
        while data := self.connection.recv(65536):
            self.connection.sendall(data)
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class TlsEcho(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(config["tls_cert"], config["tls_key"])
        with context.wrap_socket(self.request, server_side=True) as tls:
            while data := tls.recv(65536):
                tls.sendall(b"tls:" + data)


def serve(server: socketserver.BaseServer) -> int:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]  # type: ignore[index,no-any-return]


class ThreadingTCP(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


http_port = serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), HttpService))
tcp_port = serve(ThreadingTCP(("127.0.0.1", 0), Echo))
tls_port = serve(ThreadingTCP(("127.0.0.1", 0), TlsEcho)) if config.get("tls_cert") else 0


def with_options(builder: Any, options: list[list[str]]) -> Any:
    """Endpoint options as builder calls: [["basic_auth", "user", "password"], ...]."""
    for method, *args in options:
        if method == "mutual_tlsca":
            args = [bytearray(args[0].encode())]
        builder = getattr(builder, method)(*args)
    return builder


def emit(message: object) -> None:
    print(json.dumps(message), flush=True)


class StopTunnelEvents(logging.Handler):
    """The SDK tells Python nothing when the server stops one of its tunnels; its debug log
    ("unlisten; id=...", on reading a StopTunnel) is the only trace, so relay that."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("unlisten; id="):
            emit({"event": "tunnel stopped", "id": message.split("=", 1)[1].strip('"')})


sdk_session_log = logging.getLogger("ngrok.internals.raw_session")
sdk_session_log.setLevel(logging.DEBUG)
sdk_session_log.addHandler(StopTunnelEvents())
sdk_session_log.propagate = False
ngrok.log_level("DEBUG")  # lets the SDK's records through; each logger's own level still filters


async def main() -> None:
    builder = (
        ngrok.SessionBuilder()
        .authtoken(config["token"])
        .server_addr(config["server_addr"])
        .ca_cert(bytearray(Path(config["ca"]).read_bytes()))
        .handle_disconnection(lambda addr, error: emit({"event": "disconnected", "error": str(error)}))
    )
    try:
        session = await builder.connect()
    except Exception as error:  # the SDK raises ValueError(message, detail, code)
        emit({"error": [str(arg) for arg in error.args]})
        return
    results = {}
    for endpoint in config.get("endpoints", []):
        name, kind = endpoint["name"], endpoint["kind"]
        options = endpoint.get("options", [])

        try:
            if kind == "http":
                # The SDK's default scheme is https (served on the HTTPS listener); the
                # tests ask for "http" unless they say otherwise. Without a domain, Burrow
                # assigns a name.
                builder_http = session.http_endpoint().scheme(endpoint.get("scheme", "http").upper())
                if endpoint.get("domain"):
                    builder_http = builder_http.domain(endpoint["domain"])
                listener = await with_options(builder_http, options).listen_and_forward(
                    endpoint.get("upstream", f"http://127.0.0.1:{http_port}")
                )
            elif kind == "tcp":
                builder_tcp = with_options(session.tcp_endpoint(), options)
                if endpoint.get("remote_addr"):
                    builder_tcp = builder_tcp.remote_addr(endpoint["remote_addr"])
                listener = await builder_tcp.listen_and_forward(f"tcp://127.0.0.1:{tcp_port}")
            elif kind == "tls":
                listener = (
                    await with_options(session.tls_endpoint().domain(endpoint["domain"]), options)
                    .listen_and_forward(f"tcp://127.0.0.1:{tls_port}")
                )  # fmt: skip
            else:
                labeled = session.labeled_listener()
                for key, value in endpoint["labels"].items():
                    labeled = labeled.label(key, value)
                listener = await labeled.listen_and_forward(f"http://127.0.0.1:{http_port}")
            results[name] = {"url": listener.url(), "id": listener.id()}
        except Exception as error:
            results[name] = {"error": [str(arg) for arg in error.args]}
    emit({"ready": results})
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    # Bounded: with its session ended by the server (a deleted credential, a node gone),
    # the SDK's close can wait on reconnection for as long as the test would let it.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(session.close(), 2)


asyncio.run(main())
