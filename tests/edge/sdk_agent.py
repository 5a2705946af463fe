"""An ngrok agent for the tests: the PyPI ``ngrok`` SDK, run in its own environment.

Usage: python sdk_agent.py CONFIG_JSON. It starts local services (HTTP, TCP echo, TLS
echo), opens a session and the endpoints the config asks for, prints one JSON line
``{"ready": {name: {"url", "id"} or {"error", "args"}}}`` (or ``{"error": ...}`` if the
session fails), then runs until its stdin closes, printing session events as JSON lines.
This file runs under the SDK's interpreter and imports nothing from Burrow.
"""

import asyncio
import hashlib
import http.server
import json
import socketserver
import ssl
import sys
import threading
from pathlib import Path

from ngrok import ngrok

config = json.loads(sys.argv[1])


class HttpService(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path.startswith("/bytes/"):
            size = int(self.path.split("/")[2])
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            block = bytes(range(256)) * 4096
            sent = 0
            while sent < size:
                chunk = block[: min(len(block), size - sent)]
                self.wfile.write(chunk)
                sent += len(chunk)
            return
        body = json.dumps(
            {"service": config.get("label", "http"), "path": self.path, "host": self.headers.get("Host")}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        digest = hashlib.sha256()
        remaining = length
        while remaining:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
        body = json.dumps({"received": length - remaining, "sha256": digest.hexdigest()}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

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


def emit(message: object) -> None:
    print(json.dumps(message), flush=True)


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
        try:
            if kind == "http":
                builder_http = session.http_endpoint()
                if endpoint.get("domain"):  # without one, Burrow assigns a name
                    builder_http = builder_http.domain(endpoint["domain"])
                listener = await builder_http.listen_and_forward(f"http://127.0.0.1:{http_port}")
            elif kind == "tcp":
                builder_tcp = session.tcp_endpoint()
                if endpoint.get("remote_addr"):
                    builder_tcp = builder_tcp.remote_addr(endpoint["remote_addr"])
                listener = await builder_tcp.listen_and_forward(f"tcp://127.0.0.1:{tcp_port}")
            elif kind == "tls":
                listener = (
                    await session.tls_endpoint()
                    .domain(endpoint["domain"])
                    .listen_and_forward(f"tcp://127.0.0.1:{tls_port}")
                )
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
    await session.close()


asyncio.run(main())
