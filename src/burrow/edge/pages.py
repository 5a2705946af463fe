"""The edge's own HTTP answers: error pages in the style of ngrok's, each naming its
ERR_NGROK code (the HTTP proxy's, and the relay's when the node it relays to is away)."""

from __future__ import annotations


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


def not_found_page(host: str) -> bytes:
    body = (
        "<!doctype html><title>Tunnel not found</title>"
        f"<h1>Tunnel {_escape(host)} not found</h1>"
        "<p>No agent is serving this name on this Burrow server.</p><p>ERR_NGROK_3200</p>\n"
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
CONNECTION_REFUSED = page(
    503, "Service Unavailable", "ERR_NGROK_90503", "Too many connections: try again later."
)
