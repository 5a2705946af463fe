"""No tenant answers for another (issue 17): tenant A runs a malicious agent, a raw muxado
client answering its proxy streams with crafted bytes; tenant B an honest SDK agent in front
of a service that counts what reaches it. One client keeps one keep-alive connection to the
public HTTP listener and asks A's hostname, then B's.

For every crafted answer, read by httpx and by the strict and lenient raw parsers of
``http_clients.py``: B's answer is B's service's, never A's bytes; B's request reaches B's
service exactly once (a client whose connection Burrow closed asks again on a new one, as
every HTTP client does for an idempotent request); the forged response is never on the wire.
"""

from __future__ import annotations

import http.server
import json
import select
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.edge.conftest import SDK_PYTHON
from tests.edge.http_clients import Closed, Outcome, RawClient, Response
from tests.edge.malicious_agent import MaliciousAgent, Reply
from tests.edge.test_sdk import credential
from tests.harness import BurrowServer, local_http_service

pytestmark = pytest.mark.e2e  # `burrow serve`, the agent SDK

A_HOST = "evil.a.example"
B_HOST = "bank.b.example"
B_BODY = "B-HONEST"
FORGED = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nSet-Cookie: sid=evil-planted\r\n\r\nEVIL-FAKE"
OK = b"HTTP/1.1 200 OK\r\n"


def _bare_lf_head() -> bytes:
    # A parser ending the head at the bare LF reads the padding as a 77-byte body and the
    # forged response as the next one; one ending it at CRLF CRLF reads the forgery as body.
    pad = b"X-Pad: " + b"p" * (77 - 7 - 4) + b"\r\n\r\n"
    return OK + b"Content-Length: 77\r\nX-A: 1\n\n" + pad + FORGED


@dataclass(frozen=True)
class Case:
    name: str
    reply: Reply
    method: str = "GET"


CASES = [
    Case("bare-LF head", Reply((_bare_lf_head(),))),
    Case("bare-LF head, split", Reply((_bare_lf_head()[:40], _bare_lf_head()[40:]), delay=0.05)),
    Case("two responses in one", Reply((OK + b"Content-Length: 2\r\n\r\nhi" + FORGED,))),
    Case("two responses, the second later", Reply((OK + b"Content-Length: 2\r\n\r\nhi", FORGED), delay=0.1)),
    Case("1xx then junk", Reply((b"HTTP/1.1 100 Continue\r\n\r\nJUNK\r\n" + FORGED,))),
    Case(
        "bad chunking", Reply((OK + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n" + FORGED,))
    ),
    Case(
        "chunk size overflow",
        Reply((OK + b"Transfer-Encoding: chunked\r\n\r\n" + b"f" * 20 + b"\r\n" + FORGED,)),
    ),
    Case("body after 204", Reply((b"HTTP/1.1 204 No Content\r\n\r\n" + FORGED,))),
    Case("body after 304", Reply((b"HTTP/1.1 304 Not Modified\r\n\r\n" + FORGED,))),
    Case("body after HEAD", Reply((OK + b"Content-Length: 79\r\n\r\n" + FORGED,)), method="HEAD"),
    Case(
        "unasked 101",
        Reply((b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n" + FORGED,)),
    ),
    Case("huge head", Reply((OK + b"X-Big: " + b"b" * 100_000 + b"\r\n\r\n" + FORGED,))),
    Case("bare CR", Reply((OK + b"X-A: 1\rContent-Length: 0\r\n\r\n" + FORGED,))),
    Case("obs-fold", Reply((OK + b"Content-Length: 0\r\nX-A: 1\r\n Content-Length: 79\r\n\r\n" + FORGED,))),
    Case("NUL", Reply((OK + b"X-A: \x00\r\nContent-Length: 0\r\n\r\n" + FORGED,))),
    Case("two Content-Lengths", Reply((OK + b"Content-Length: 0\r\nContent-Length: 79\r\n\r\n" + FORGED,))),
    Case(
        "identity, chunked",
        Reply((OK + b"Transfer-Encoding: identity, chunked\r\nContent-Length: 0\r\n\r\n" + FORGED,)),
    ),
    Case("Content-Length with a leading zero", Reply((OK + b"Content-Length: 00\r\n\r\n" + FORGED,))),
    Case("bad status line", Reply((b"HTTP/1.1 2000 OK\r\n\r\n" + FORGED,))),
    Case("agent resets mid-body", Reply((OK + b"Content-Length: 100\r\n\r\npartial",), end="reset")),
]


# The answer A's client gets first is well framed; what follows it is the fault.
WELL_FRAMED_FIRST = {
    "two responses in one",
    "two responses, the second later",
    "body after 204",
    "body after 304",
    "body after HEAD",
}


@dataclass
class Tenants:
    server: BurrowServer
    agent: MaliciousAgent
    b_seen: list[str]
    lock: threading.Lock

    def b_count(self, path: str) -> int:
        with self.lock:
            return self.b_seen.count(path)


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenants]:
    if not SDK_PYTHON.exists():
        pytest.fail("the agent SDK's environment is missing: run 'make test' (it builds .venvs/ngrok-sdk)")
    server = BurrowServer(tmp_path_factory.mktemp("cross-tenant") / "data").start("--no-access-log")
    seen: list[str] = []
    lock = threading.Lock()

    def count(request: http.server.BaseHTTPRequestHandler) -> str:
        with lock:
            seen.append(request.path)
        return B_BODY

    a_token = credential(server, [f"bind:{A_HOST}"])["token"]
    b_key = server.new_account("b@example.com")
    with server.client(b_key) as http_b:
        created = http_b.post("/credentials", json={"acl": [f"bind:{B_HOST}"]})
        assert created.status_code == 201, created.text
        b_token = created.json()["token"]
    with local_http_service(count) as port:
        honest = _start_honest_agent(server, b_token, f"http://127.0.0.1:{port}")
        try:
            with MaliciousAgent(server.agent_addr, server.ca_path, a_token, A_HOST) as agent:
                yield Tenants(server, agent, seen, lock)
        finally:
            assert honest.stdin is not None
            honest.stdin.close()
            try:
                honest.wait(timeout=10)
            except subprocess.TimeoutExpired:
                honest.kill()
            server.stop()


def _start_honest_agent(server: BurrowServer, token: str, forward: str) -> subprocess.Popen[str]:
    config = {
        "token": token,
        "server_addr": server.agent_addr,
        "ca": str(server.ca_path),
        "domain": B_HOST,
        "forward": forward,
    }
    process = subprocess.Popen(
        [str(SDK_PYTHON), str(Path(__file__).with_name("honest_agent.py")), json.dumps(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 30)
    line = process.stdout.readline() if ready else ""
    assert line and "ready" in json.loads(line), (
        line,
        process.stderr.read() if not line and process.stderr else "",
    )
    return process


def _request(method: str, host: str, path: str) -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def _is_b(outcome: Outcome) -> bool:
    return isinstance(outcome, Response) and outcome.status == 200 and outcome.body == B_BODY.encode()


def _raw_a_then_b(tenants: Tenants, case: Case, strict: bool, pipelined: bool) -> tuple[Outcome, bytes, str]:
    """A's request, then B's on the same connection (or on a new one if Burrow closed it)."""
    path = f"/b-{uuid.uuid4().hex}"
    to_a, to_b = _request(case.method, A_HOST, "/a"), _request("GET", B_HOST, path)
    client = RawClient(tenants.server.http_addr)
    wire = bytearray()
    try:
        client.send(to_a + to_b if pipelined else to_a)
        first = client.read_response(case.method.encode(), strict)
        reusable = isinstance(first, Response) and not first.closes and not client.eof
        answer: Outcome | None = None
        if reusable and (pipelined or client.send(to_b)):
            answer = client.read_response(b"GET", strict)
        if answer is None or not _is_b(answer):
            # Closed (or refused) by Burrow: B's request was not served there; ask again.
            wire += client.received
            client.close()
            client = RawClient(tenants.server.http_addr)
            client.send(to_b)
            answer = client.read_response(b"GET", strict)
        wire += client.received
        return answer, bytes(wire), path
    finally:
        client.close()


@pytest.fixture
def scripted(tenants: Tenants) -> Callable[[Case], Tenants]:
    def script(case: Case) -> Tenants:
        tenants.agent.forget()
        tenants.agent.script = lambda request: case.reply
        return tenants

    return script


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
@pytest.mark.parametrize("parser", ["strict", "lenient", "lenient-pipelined"])
def test_a_raw_client_never_gets_a_s_bytes_as_b_s_answer(
    scripted: Callable[[Case], Tenants], case: Case, parser: str
) -> None:
    tenants = scripted(case)
    answer, wire, path = _raw_a_then_b(tenants, case, parser == "strict", parser.endswith("pipelined"))
    assert _is_b(answer), (answer, wire[-400:])
    assert tenants.b_count(path) == 1
    assert b"evil-planted" not in wire and b"EVIL-FAKE" not in wire
    assert tenants.agent.error is None


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_httpx_never_gets_a_s_bytes_as_b_s_answer(scripted: Callable[[Case], Tenants], case: Case) -> None:
    tenants = scripted(case)
    path = f"/b-{uuid.uuid4().hex}"
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    base = f"http://{tenants.server.http_addr}"
    with httpx.Client(base_url=base, limits=limits, timeout=5) as http:
        try:
            first = http.request(case.method, "/a", headers={"Host": A_HOST})
            assert b"EVIL-FAKE" not in first.content and "evil-planted" not in str(first.headers)
        except httpx.HTTPError:
            pass  # A's answer refused by httpx too; its connection is dropped
        try:
            answer = http.get(path, headers={"Host": B_HOST})
        except httpx.RemoteProtocolError:  # Burrow closed the kept-alive connection: ask again
            answer = http.get(path, headers={"Host": B_HOST})
    assert answer.status_code == 200 and answer.text == B_BODY, (answer, answer.headers, answer.text)
    assert "evil-planted" not in str(answer.headers)
    assert tenants.b_count(path) == 1


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.name != "agent resets mid-body"], ids=lambda c: c.name
)
def test_a_faulty_answer_is_a_502_and_the_connection_closes(
    scripted: Callable[[Case], Tenants], case: Case
) -> None:
    """What Burrow itself says to A's client: the faulty answer is refused (502) before any
    of it is sent, or, found mid-body, the connection is cut; either way it is not reused."""
    tenants = scripted(case)
    client = RawClient(tenants.server.http_addr)
    try:
        client.send(_request(case.method, A_HOST, "/a"))
        first = client.read_response(case.method.encode(), strict=True)
        if isinstance(first, Response) and first.status == 502:
            assert first.closes
            return
        # A well-framed answer with the forgery after it: the answer is forwarded, the extra
        # bytes are the fault, and the connection closes once they arrive.
        assert isinstance(first, Response), (first, bytes(client.received[-300:]))
        assert case.name in WELL_FRAMED_FIRST, first
        assert isinstance(client.read_response(b"GET", strict=True), Closed)
        assert b"EVIL-FAKE" not in client.received
    finally:
        client.close()


@pytest.mark.parametrize(
    ("reply", "code", "says"),
    [
        (Reply((), end="fin"), b"ERR_NGROK_8012", b"could not reach its local service"),
        (Reply((), end="reset"), b"ERR_NGROK_8012", b"could not reach its local service"),
        (Reply((OK[:10],), end="fin"), b"ERR_NGROK_3004", b"invalid or incomplete answer"),
        (Reply((OK + b"Content-Length: 0\r\n",), end="reset"), b"ERR_NGROK_3004", b"incomplete"),
    ],
    ids=["closed unanswered", "reset unanswered", "half a status line", "half a head, reset"],
)
def test_an_agent_ending_the_stream_before_its_answer_is_a_502_saying_which(
    scripted: Callable[[Case], Tenants], reply: Reply, code: bytes, says: bytes
) -> None:
    """An agent closing the stream without a byte of an answer is what the SDKs do when
    their local service refuses the connection: the client is told so (ngrok's 8012), not
    cut off; an answer that stops within its head is the service's fault (3004)."""
    tenants = scripted(Case("ended", reply))
    client = RawClient(tenants.server.http_addr)
    try:
        client.send(_request("GET", A_HOST, "/a"))
        answer = client.read_response(b"GET", strict=True)
        assert isinstance(answer, Response) and answer.status == 502, (answer, bytes(client.received))
        assert answer.values(b"ngrok-error-code") == [code] and says in answer.body and answer.closes
    finally:
        client.close()


# Requests the edge and a tenant could frame differently (request smuggling) -----------------

SMUGGLED = [
    ("identity, chunked", b"Transfer-Encoding: identity, chunked\r\n", 400),
    ("a tab after chunked", b"Transfer-Encoding: chunked\t\r\n", 501),
    ("chunked twice", b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", 501),
    ("chunked and Content-Length", b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", 400),
    ("two Content-Lengths", b"Content-Length: 0\r\nContent-Length: 5\r\n", 400),
    ("Content-Length with a leading zero", b"Content-Length: 00\r\n", 400),
    ("Content-Length: +0", b"Content-Length: +0\r\n", 400),
    ("obs-fold", b"X-A: 1\r\n Transfer-Encoding: chunked\r\n", 400),
    ("bare LF", b"X-A: 1\nTransfer-Encoding: chunked\r\n", 400),
    ("space before the colon", b"Transfer-Encoding : chunked\r\n", 400),
]


@pytest.mark.parametrize(("fields", "status"), [case[1:] for case in SMUGGLED], ids=[c[0] for c in SMUGGLED])
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_request_framed_ambiguously_is_refused_and_smuggles_nothing(
    scripted: Callable[[Case], Tenants], fields: bytes, status: int, method: str
) -> None:
    """A request whose framing could be read two ways, carrying a request for B in what one
    reading calls its body: refused, the connection closed; neither the smuggled request nor
    the one around it reaches anyone."""
    tenants = scripted(Case("honest", Reply((OK + b"Content-Length: 2\r\n\r\nhi",))))
    path = f"/smuggled-{uuid.uuid4().hex}"
    inner = _request("GET", B_HOST, path)
    body = b"0\r\n\r\n" + inner
    client = RawClient(tenants.server.http_addr)
    try:
        client.send(f"{method} /a HTTP/1.1\r\nHost: {A_HOST}\r\n".encode() + fields + b"\r\n" + body + inner)
        answer = client.read_response(method.encode(), strict=True)
        assert isinstance(answer, Response) and answer.status == status and answer.closes, answer
        assert isinstance(client.read_response(b"GET", strict=True), Closed)
    finally:
        client.close()
    time.sleep(0.2)  # anything smuggled would be on its way by now
    assert tenants.b_count(path) == 0
    assert tenants.agent.requests() == []


def test_a_get_with_a_body_is_refused_before_it_reaches_anyone(scripted: Callable[[Case], Tenants]) -> None:
    tenants = scripted(Case("honest", Reply((OK + b"Content-Length: 2\r\n\r\nhi",))))
    path = f"/smuggled-{uuid.uuid4().hex}"
    inner = _request("GET", B_HOST, path)
    client = RawClient(tenants.server.http_addr)
    try:
        head = f"GET /a HTTP/1.1\r\nHost: {A_HOST}\r\nContent-Length: {len(inner)}\r\n\r\n".encode()
        client.send(head + inner)
        answer = client.read_response(b"GET", strict=True)
        assert isinstance(answer, Response) and answer.status == 400 and answer.closes, answer
    finally:
        client.close()
    time.sleep(0.2)
    assert tenants.b_count(path) == 0
    assert tenants.agent.requests() == []
