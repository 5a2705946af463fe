"""The one grammar of names: hostnames, ports and TCP addresses, wherever they are parsed.

Edge binds, reserved domains and addresses, credential ACL rules, the HTTPS listener's
server names and the server's settings (``--tcp-ports``, ``--http-addr``, ...) all read
names here, so that a name one part accepts means the same thing to every other.

* A hostname is dot-separated labels of ASCII letters, digits and hyphens (a label is 1-63
  characters and neither starts nor ends with a hyphen), 253 characters at most, no
  trailing dot. Letters match in any case; the normal form is lower-case. Nothing outside
  ASCII: under ``re.IGNORECASE`` the Kelvin sign would match ``k``.
* A port is ASCII decimal digits without leading zeros, 1-65535 (0 only where a listening
  address may ask the system for a free port). ``020000`` is not a port: read as decimal it
  is 20000, as octal 8192, and a name that means different things to different readers is
  refused rather than guessed at.
* A TCP address is ``host:port``; the host is a hostname (which covers IPv4 addresses) or
  a bracketed IPv6 address.
* An endpoint URL (what today's agents bind) is ``scheme://host[:port]``: ``http``,
  ``https``, ``tls`` or ``tcp``, a hostname (or nothing: the server assigns one), an
  optional port; no user, path, query or fragment. ``tcp://host:port`` names an address.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

MAX_HOSTNAME = 253
MAX_PORT = 65535

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.IGNORECASE | re.ASCII)
_PORT = re.compile(r"0|[1-9][0-9]{0,4}", re.ASCII)


def hostname(text: str) -> str | None:
    """The hostname in its normal (lower-case) form, or None if ``text`` is not one."""
    if len(text) > MAX_HOSTNAME or not text.isascii() or _HOSTNAME.fullmatch(text) is None:
        return None
    return text.lower()


def is_hostname(text: str) -> bool:
    return hostname(text) is not None


def is_ip_literal(text: str) -> bool:
    """Whether ``text`` is an IP address (IPv6 bracketed or not), which no grammar here names."""
    try:
        ipaddress.ip_address(text[1:-1] if text.startswith("[") and text.endswith("]") else text)
    except ValueError:
        return False
    return True


def port(text: str, *, allow_zero: bool = False) -> int | None:
    """The port ``text`` names, or None: decimal, no leading zeros, 1-65535 (or 0 if allowed)."""
    if _PORT.fullmatch(text) is None:
        return None
    number = int(text)
    if number > MAX_PORT or (number == 0 and not allow_zero):
        return None
    return number


def host(text: str) -> str | None:
    """A TCP address's host in normal form: a lower-case hostname or ``[compressed IPv6]``."""
    if text.startswith("[") and text.endswith("]"):
        try:
            return f"[{ipaddress.IPv6Address(text[1:-1]).compressed}]"
        except ValueError:
            return None
    return hostname(text)


def address(text: str) -> tuple[str, int] | None:
    """``host:port`` as (normal host, port), or None."""
    host_text, sep, port_text = text.rpartition(":")
    if not sep:
        return None
    parsed_host, parsed_port = host(host_text), port(port_text)
    if parsed_host is None or parsed_port is None:
        return None
    return parsed_host, parsed_port


def port_range(text: str) -> range | None:
    """``FIRST-LAST`` (inclusive) or one ``PORT`` as a range of ports, or None."""
    first_text, sep, last_text = text.partition("-")
    first = port(first_text)
    last = port(last_text) if sep else first
    if first is None or last is None or last < first:
        return None
    return range(first, last + 1)


URL_SCHEMES = ("http", "https", "tls", "tcp")


@dataclass(frozen=True)
class EndpointURL:
    scheme: str
    host: str  # normal form; "" when the server is to assign the name
    port: int | None  # None when the URL names none


def endpoint_url(text: str) -> EndpointURL | None:
    """The endpoint URL ``text`` names, or None if it is not ``scheme://host[:port]``."""
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in URL_SCHEMES:
        return None
    if not rest:
        return EndpointURL(scheme.lower(), "", None)
    if rest.startswith("["):  # an IPv6 literal: read whole, for the caller to refuse by name
        end = rest.find("]") + 1
        host_text, after = rest[:end], rest[end:]
        colon, port_text = (":", after[1:]) if after.startswith(":") else ("", after)
        parsed_host = host(host_text) if end else None
        parsed_port = port(port_text) if colon else None
        if parsed_host is None or (colon and parsed_port is None) or (after and not colon):
            return None
        return EndpointURL(scheme.lower(), parsed_host, parsed_port)
    host_text, colon, port_text = rest.rpartition(":") if ":" in rest else (rest, "", "")
    parsed_port = port(port_text) if colon else None
    if colon and parsed_port is None:
        return None
    if not host_text and colon and scheme.lower() == "tcp":
        return EndpointURL("tcp", "", parsed_port)  # tcp://:PORT, a port on the server's host
    parsed_host = hostname(host_text)
    if parsed_host is None:
        return None
    return EndpointURL(scheme.lower(), parsed_host, parsed_port)
