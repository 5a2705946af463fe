"""The edge's own HTTP answers: error pages in the style of ngrok's, each naming its
ERR_NGROK code (the HTTP proxy's, and the relay's when the node it relays to is away)."""

from __future__ import annotations

from burrow.domain.endpoint import Refusal

from .http1 import RemoteProtocolError


def page(
    status: int,
    reason: str,
    code: str,
    message: str,
    headers: tuple[tuple[bytes, bytes], ...] = (),
    close: bool = True,
) -> bytes:
    """A small error page in the style of the 404 page: the message and its ERR_NGROK code."""
    body = f"{message}\n{code}\n".encode()
    head = [
        f"HTTP/1.1 {status} {reason}".encode(),
        b"Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}".encode(),
        f"Ngrok-Error-Code: {code}".encode(),
    ]
    head += [name + b": " + value for name, value in headers]
    if close:
        head.append(b"Connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def not_found_page(host: str, https_url: str | None = None) -> bytes:
    """The 404 for a host no tunnel serves on this listener; ``https_url``: the endpoint
    that serves it over HTTPS, for a plain HTTP request to an https-only name."""
    if https_url is None:
        said = "<p>No agent is serving this name on this Burrow server.</p>"
    else:
        link = _escape(https_url)
        said = f'<p>This name is served over HTTPS only: <a href="{link}/">{link}/</a></p>'
    body = (
        f"<!doctype html><title>Tunnel not found</title><h1>Tunnel {_escape(host)} not found</h1>"
        f"{said}<p>ERR_NGROK_3200</p>\n"
    ).encode()
    head = (
        "HTTP/1.1 404 Not Found\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\nNgrok-Error-Code: ERR_NGROK_3200\r\n\r\n"
    ).encode()
    return head + body


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def bad_request(message: str) -> bytes:
    return page(400, "Bad Request", "ERR_NGROK_90400", message)


HEAD_TOO_LARGE = page(
    431, "Request Header Fields Too Large", "ERR_NGROK_90431", "The request head is too large."
)
BAD_GATEWAY = page(
    502, "Bad Gateway", "ERR_NGROK_3004", "The agent's service gave an invalid or incomplete answer."
)
SERVICE_UNREACHABLE = page(
    502,
    "Bad Gateway",
    "ERR_NGROK_8012",
    "The request reached the tunnel's agent, but the agent could not reach its local service "
    "(nothing listening there, or the connection was refused): start the service the agent "
    "forwards to.",
)
CONNECTION_REFUSED = page(
    503, "Service Unavailable", "ERR_NGROK_90503", "Too many connections: try again later."
)
VERSION_NOT_SUPPORTED = page(
    505, "HTTP Version Not Supported", "ERR_NGROK_90505", "Only HTTP/1.0 and HTTP/1.1 are served."
)
BODY_TOO_LARGE = page(413, "Content Too Large", "ERR_NGROK_90413", "The request body is too large.")
AGENT_BUSY = page(
    503, "Service Unavailable", "ERR_NGROK_90503", "The tunnel's agent has too many open connections."
)
CONNECT_NOT_SERVED = page(405, "Method Not Allowed", "ERR_NGROK_90405", "CONNECT is not served.")
NOT_THE_SERVER_NAME = page(
    421, "Misdirected Request", "ERR_NGROK_90421", "The Host differs from the TLS server name."
)
NOT_THIS_NODE = page(
    421,
    "Misdirected Request",
    "ERR_NGROK_90421",
    "This connection went to the node of another tunnel: send it on a new connection.",
)
_REFUSAL_REASONS = {
    401: "Unauthorized",
    403: "Forbidden",
    413: "Content Too Large",
    503: "Service Unavailable",
}


def refusal_page(refusal: Refusal) -> bytes:
    """The answer to a request an endpoint's policy refused."""
    reason = _REFUSAL_REASONS.get(refusal.status, "Refused")
    return page(refusal.status, reason, refusal.code, refusal.message, refusal.headers)


def malformed_page(error: RemoteProtocolError) -> bytes:
    """The answer to a request the HTTP/1.1 core refused."""
    if error.status == 431:
        return HEAD_TOO_LARGE
    if error.status == 505:
        return VERSION_NOT_SUPPORTED
    if error.status == 501:
        return page(501, "Not Implemented", "ERR_NGROK_90501", f"{error}.")
    return bad_request(f"Malformed request: {error}.")
