"""The API's HTTP connections: uvicorn's httptools protocol with Burrow's limits.

uvicorn has no head size or header count limit for httptools, no head or body timeout and
answers its own errors in plain text; its keep-alive timeout is used as it is. Everything
here runs per received chunk or per request, so it stays cheap: one lazily re-armed timer
per connection, and counting bytes before they reach the parser (which copies a header
value on every chunk, so a huge one would cost quadratic time).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from burrow.domain import errors, ids
from burrow.domain.forwarded import TrustedProxies
from burrow.domain.limits import Admission, ApiLimits

from .http import OPERATION_ID_HEADER, error_body

log = logging.getLogger("burrow.api")
SUPPORTED_VERSIONS = frozenset({"1.1", "1.0"})


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the error is kept on the protocol."""


class LimitedHttpProtocol(HttpToolsProtocol):
    """One API connection. Use :func:`protocol_class`, which binds the limits and counters."""

    limits: ClassVar[ApiLimits] = ApiLimits()
    admission: ClassVar[Admission] = Admission(limits.max_connections, limits.max_connections_per_client)
    trusted_proxies: ClassVar[TrustedProxies] = TrustedProxies()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._admitted: str | None = None
        self._closed = False
        self._refusal: errors.BurrowError | None = None
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._header_bytes = 0
        # One timer per connection, re-armed lazily: moving a deadline costs an assignment.
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._on_deadline: Callable[[], None] | None = None

    # Connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        client = self.client[0] if self.client else ""
        # A trusted proxy carries many clients: only the total cap applies to it.
        reason = self.admission.admit(client, per_client=not self.trusted_proxies.trusts(client))
        if reason is not None:
            log.debug("API connection refused", extra={"fields": {"client": client, "reason": reason}})
            self._refuse(errors.TOO_MANY_CONNECTIONS(reason=reason))
            return
        self._admitted = client
        self._set_deadline(self.limits.head_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._on_deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._admitted is not None:
            self.admission.release(self._admitted)
            self._admitted = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self._unset_keepalive_if_required()
        if self._in_head:
            room = self.limits.max_head_bytes - self._head_bytes
            if len(data) > room:
                # Parse only what fits: the head may end within it, else it is too large.
                self._feed(data[:room])
                if self._closed:
                    return
                if self._in_head:
                    self._refuse(errors.HEAD_TOO_LARGE(max=self.limits.max_head_bytes))
                    return
                data = data[room:]
            else:
                self._head_bytes += len(data)
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # CONNECT or Upgrade: the API speaks neither; answer the request, then hang up.
            if self.cycle is not None:
                self.cycle.keep_alive = False
        except httptools.HttpParserError as problem:
            self._refuse(self._refusal or errors.MALFORMED_REQUEST(reason=str(problem).rstrip(".")))

    def timeout_keep_alive_handler(self) -> None:
        # A client that does not read its responses must not keep the connection by it.
        if self.transport.get_write_buffer_size():
            self.transport.abort()
        else:
            super().timeout_keep_alive_handler()

    # Parser callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = self._header_bytes = 0
        if self._on_deadline is None:
            self._set_deadline(self.limits.head_timeout, self._head_timed_out)

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_head_bytes:
            self._stop(errors.HEAD_TOO_LARGE(max=self.limits.max_head_bytes))

    def on_header(self, name: bytes, value: bytes) -> None:
        # Counted here too: bytes parsed in the chunk that ended the previous request
        # were not counted as this head's.
        self._header_count += 1
        self._header_bytes += len(name) + len(value) + 4
        if self._header_count > self.limits.max_headers:
            self._stop(errors.TOO_MANY_HEADERS(max=self.limits.max_headers))
        if self._header_bytes > self.limits.max_head_bytes:
            self._stop(errors.HEAD_TOO_LARGE(max=self.limits.max_head_bytes))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        version = self.parser.get_http_version()
        if version not in SUPPORTED_VERSIONS:
            self._stop(errors.HTTP_VERSION_UNSUPPORTED(version=version))
        self._in_head = False
        self._set_deadline(self.limits.body_timeout, self._body_timed_out)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._deadline = self.loop.time() + self.limits.body_timeout
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._on_deadline = None
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()

    # Limits -------------------------------------------------------------------------

    def _stop(self, error: errors.BurrowError) -> None:
        self._refusal = error
        raise _Refused(error.message)

    def _head_timed_out(self) -> None:
        if self._head_bytes == 0:
            self.transport.close()  # nothing was sent: hang up without an answer
        else:
            timeout = self.limits.head_timeout
            self._refuse(errors.REQUEST_TIMEOUT(reason=f"the headers took over {timeout:g} s"))

    def _body_timed_out(self) -> None:
        if self.cycle is not None and self.cycle.response_complete:
            self.transport.close()  # answered already (say, 401 without reading the body)
            return
        timeout = self.limits.body_timeout
        self._refuse(errors.REQUEST_TIMEOUT(reason=f"the body stalled for over {timeout:g} s"))

    def _set_deadline(self, seconds: float, on_deadline: Callable[[], None]) -> None:
        self._deadline = self.loop.time() + seconds
        self._on_deadline = on_deadline
        if self._timer is None:
            self._timer = self.loop.call_at(self._deadline, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        if self._on_deadline is None or self._closed:
            return
        if self.loop.time() < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._check_deadline)
            return
        self._on_deadline()

    def _refuse(self, error: errors.BurrowError) -> None:
        """Answer ``error`` with ngrok's body if no response is under way, then hang up."""
        self._closed = True
        self._on_deadline = None
        cycle = self.cycle
        answer = cycle is None or cycle.response_complete or not cycle.response_started
        if cycle is not None and not cycle.response_complete:
            # The application stops waiting for the body, and what it sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self.pipeline.clear()
        if answer and not self.transport.is_closing():
            op = ids.new_operation_id()
            body = error_body(error, op)
            self.transport.write(
                b"".join(
                    [
                        STATUS_LINE[error.status],
                        b"content-type: application/json\r\n",
                        b"content-length: %d\r\n" % len(body),
                        OPERATION_ID_HEADER.encode() + b": " + op.encode() + b"\r\n",
                        b"connection: close\r\n\r\n",
                        body,
                    ]
                )
            )
        self.transport.close()


def protocol_class(
    limits: ApiLimits, trusted_proxies: TrustedProxies | None = None
) -> type[LimitedHttpProtocol]:
    """The protocol for uvicorn's ``Config(http=...)``, with ``limits`` and its own counters."""

    class ApiHttpProtocol(LimitedHttpProtocol):
        pass

    ApiHttpProtocol.limits = limits
    ApiHttpProtocol.admission = Admission(limits.max_connections, limits.max_connections_per_client)
    ApiHttpProtocol.trusted_proxies = trusted_proxies or TrustedProxies()
    return ApiHttpProtocol
