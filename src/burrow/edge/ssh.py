"""The SSH tunnel gateway (``--ssh-addr``): tunnels started with nothing but OpenSSH.

``ssh -R 0:localhost:8080 v2@HOST -p PORT http`` authenticates with a public key
registered under ``/ssh_credentials``, asks for a remote forward, and runs the command
``http`` (or ``tcp``, ``tls``) with ngrok's flags. The gateway then drives the SAME edge
machinery as an agent session, so that listeners, endpoint policies, limits,
reservations, ACLs, ``/tunnel_sessions``, revocation and the cluster treat both alike:

- authentication goes through :class:`~burrow.edge.control.AgentControl` (the failed
  authentication throttle, session start limits), and the session is an
  :class:`~burrow.domain.tunnels.AgentSession` whose credential is the SSH credential;
- the tunnel is bound by ``AgentControl.bind`` from a :class:`~burrow.edge.wire.Bind`
  built from the command, so the ACL, reservation and option checks are the agents';
- the session is an :class:`~burrow.edge.agent.AgentConnection` over a local muxado
  connection (a socket pair): the public listeners open proxy streams to it as to any
  agent (``Edge._open_proxy``), with its stream cap; the bridge's other end turns each
  proxy stream into a ``forwarded-tcpip`` channel to the SSH client, and the commands the
  edge sends (StopTunnel on revocation, Stop) into messages on the session and its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shlex
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from burrow.domain import errors, ssh_keys
from burrow.domain.limits import Admission, AgentLimits
from burrow.store.store import AuthRecord

from . import wire
from .agent import AgentConnection, read_message
from .control import AgentControl, Authenticated
from .muxado_streams import MuxConnection, MuxStream
from .wire import StreamType

log = logging.getLogger("burrow.edge")

USER = "v2"  # ngrok's: the user names the version of the command syntax
COMMAND_READ_TIMEOUT = 5.0  # seconds a command from the edge (StopTunnel, Stop) may take to arrive
MAX_KEYS_PER_CONNECTION = 6  # refused keys before the connection ends (OpenSSH's MaxAuthTries)
FORWARD_WAIT = 5.0  # seconds the command waits for the client's remote forward request
_NO_NAME = frozenset({"", "localhost", "*", "0.0.0.0", "::"})  # ssh -R PORT:... names no endpoint
_HELP = (
    "Burrow's SSH tunnel gateway.\n"
    "  ssh -R 0:localhost:PORT v2@HOST -p SSHPORT http [--basic-auth USER:PASS] "
    "[--cidr-allow CIDR] [--cidr-deny CIDR]\n"
    "  ssh -R NAME:80:localhost:PORT ... http     a fixed hostname (443: an https endpoint)\n"
    "  ssh -R 0:localhost:PORT ... tcp            a random TCP address (ADDR:PORT:... a fixed one)\n"
    "  ssh -R NAME:443:localhost:PORT ... tls     a TLS endpoint (not decrypted)\n"
)


@dataclass
class Forward:
    """The client's remote forward (``tcpip-forward``): the name and port it asked for, and
    the port answered (for port 0), which its forwarded-tcpip channels name."""

    host: str
    port: int
    answered: int


class _Listener(asyncssh.SSHListener):
    """What asyncssh keeps for a forward the gateway accepted: nothing listens locally."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self._port = port

    def get_port(self) -> int:
        return self._port

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


@dataclass(frozen=True)
class Command:
    proto: str  # the Bind's Proto: "http", "https", "tcp", "tls"
    opts: dict[str, Any] = field(default_factory=dict)


def parse_command(text: str, forward: Forward, has_https: bool) -> Command:
    """The Bind a command asks for (``http --basic-auth u:p``), with the forward's name
    and port; refused with ERR_NGROK_90465 (or the option errors) when Burrow cannot do it."""
    try:
        words = shlex.split(text)
    except ValueError as problem:
        raise errors.SSH_COMMAND_INVALID(reason=str(problem)) from None
    if not words:
        raise errors.SSH_COMMAND_INVALID(reason="no command: give http, tcp or tls")
    kind, flags = words[0].lower(), words[1:]
    if kind not in ("http", "tcp", "tls"):
        raise errors.SSH_COMMAND_INVALID(reason=f"unknown command {words[0][:40]!r}: give http, tcp or tls")
    name = "" if forward.host in _NO_NAME else forward.host
    port = forward.port
    opts: dict[str, Any] = {}
    credentials: list[dict[str, str]] = []
    allow: list[str] = []
    deny: list[str] = []
    index = 0
    while index < len(flags):
        flag, _, inline = flags[index].partition("=")
        index += 1
        if flag in ("--basic-auth", "--cidr-allow", "--cidr-deny"):
            if inline:
                value = inline
            elif index < len(flags):
                value, index = flags[index], index + 1
            else:
                raise errors.SSH_COMMAND_INVALID(reason=f"{flag} needs a value")
            if flag == "--basic-auth":
                if kind != "http":
                    raise errors.SSH_COMMAND_INVALID(reason="--basic-auth is for http endpoints")
                username, sep, password = value.partition(":")
                if not sep:
                    raise errors.SSH_COMMAND_INVALID(reason="--basic-auth takes USER:PASSWORD")
                credentials.append({"Username": username, "Cleartext_Password": password})
            else:
                (allow if flag == "--cidr-allow" else deny).append(value)
        else:
            raise errors.SSH_COMMAND_INVALID(
                reason=f"the flag {flag[:40]!r} is not supported by this gateway "
                "(supported: --basic-auth, --cidr-allow, --cidr-deny)"
            )
    if credentials:
        opts["BasicAuth"] = {"Credentials": credentials}
    if allow or deny:
        opts["IPRestriction"] = {"Allow_CIDRs": allow, "Deny_CIDRs": deny}
    if kind == "tcp":
        if port:
            opts["Addr"] = f"{name}:{port}" if name else f":{port}"
        return Command("tcp", opts)
    if kind == "tls":
        if port not in (0, 443):
            raise errors.SSH_COMMAND_INVALID(reason=f"tls endpoints take remote port 443 (or 0), not {port}")
        if name:
            opts["Hostname"] = name
        return Command("tls", opts)
    if port not in (0, 80, 443):
        raise errors.SSH_COMMAND_INVALID(
            reason=f"http endpoints take remote port 80 or 443 (or 0), not {port}"
        )
    if port == 443 and not has_https:
        raise errors.SSH_COMMAND_INVALID(reason="this server has no HTTPS listener: use remote port 80")
    if name:
        opts["Hostname"] = name
    return Command("https" if port == 443 else "http", opts)


class SshGateway:
    """The SSH listener and its sessions."""

    def __init__(
        self,
        control: AgentControl,
        limits: AgentLimits,
        host_key: bytes,
        register: Callable[[AgentConnection], None],
        unregister: Callable[[AgentConnection], None],
        has_https: bool,
    ) -> None:
        self.control = control
        self.limits = limits
        self.host_key = asyncssh.import_private_key(host_key)
        self.register = register
        self.unregister = unregister
        self.has_https = has_https
        self.admission = Admission(limits.max_connections, limits.max_connections_per_client)
        self._server: asyncssh.SSHAcceptor | None = None
        self._sessions: set[SshSession] = set()
        self.address: tuple[str, int] | None = None

    async def start(self, host: str, port: int, sock: socket.socket | None = None) -> None:
        options: dict[str, Any] = {
            "server_host_keys": [self.host_key],
            "login_timeout": self.limits.auth_timeout,
            "keepalive_interval": 15,
            "keepalive_count_max": 3,
            "allow_scp": False,
            "agent_forwarding": False,
            "x11_forwarding": False,
            "server_version": "Burrow",
        }
        if sock is not None:
            self._server = await asyncssh.create_server(lambda: SshSession(self), sock=sock, **options)
        else:
            self._server = await asyncssh.create_server(lambda: SshSession(self), host, port, **options)
        sockets = self._server.sockets
        if sockets:
            bound = sockets[0].getsockname()
            self.address = (str(bound[0]), int(bound[1]))
        log.info(
            "ssh gateway listening",
            extra={
                "fields": {
                    "addr": f"{host}:{self.address[1] if self.address else port}",
                    "host_key": self.host_key.get_fingerprint("sha256"),
                }
            },
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions):
            session.end("server shutting down")
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)


class SshSession(asyncssh.SSHServer):
    """One SSH client connection, from its key to the end of its tunnel."""

    def __init__(self, gateway: SshGateway) -> None:
        self.gateway = gateway
        self.conn: asyncssh.SSHServerConnection | None = None
        self.client_ip = ""
        self.client_addr = ""
        self._admitted = False
        self._accepted: dict[str, tuple[str, AuthRecord]] = {}  # fingerprint -> credential
        self._refused = 0
        self._last_accepted: str | None = None
        self.authenticated: Authenticated | None = None
        self.agent: AgentConnection | None = None
        self.forward: Forward | None = None
        self.forward_ready = asyncio.Event()
        self.started = asyncio.Event()  # the session is in the registry (or failed to be)
        self.command_channel: asyncssh.SSHServerChannel[str] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ended = False

    # asyncssh.SSHServer ----------------------------------------------------------------

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername")
        host, port = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else ("", 0)
        self.client_ip = host
        self.client_addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        reason = self.gateway.admission.admit(host)
        if reason is not None:
            log.debug("ssh connection refused", extra={"fields": {"client": host, "reason": reason}})
            conn.abort()
            return
        self._admitted = True
        self.gateway._sessions.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._admitted:
            self._admitted = False
            self.gateway.admission.release(self.client_ip)
        self.gateway._sessions.discard(self)
        self._ended = True
        # Cancelling the session's task ends its AgentConnection.run, whose cleanup takes the
        # session out of the registry and the edge, and closes the bridge.
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()

    def begin_auth(self, username: str) -> bool:
        if username != USER and self.conn is not None:
            error = errors.SSH_USER_UNSUPPORTED(user=username[:64])
            self.conn.send_auth_banner(f"{error.code}: {error.message}\n")
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if username != USER:
            return False
        fingerprint = ssh_keys.fingerprint(key.public_data)
        if fingerprint in self._accepted:  # the signed request after the query: checked once
            self._last_accepted = fingerprint
            return True
        try:
            found = await self.gateway.control.check_ssh_key(fingerprint, self.client_ip)
        except errors.BurrowError as error:
            self.gateway.control.auth_failures += 1
            log.info("ssh key refused", extra={"fields": {"client": self.client_addr, "error": error.code}})
            if error.code != errors.SSH_KEY_UNKNOWN.code and self.conn is not None:
                self.conn.send_auth_banner(f"{error.code}: {error.message}\n")
            self._refused += 1
            if self._refused >= MAX_KEYS_PER_CONNECTION and self.conn is not None:
                self.conn.disconnect(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE, "too many keys refused")
            return False
        # The session is the credential of the key accepted last: asyncssh takes one request
        # at a time (a new one cancels a check still waiting), and a signed request's key is
        # checked here just before its signature, with no wait between them and success.
        self._accepted[fingerprint] = found
        self._last_accepted = fingerprint
        return True

    def auth_completed(self) -> None:
        self._spawn(self._start())

    def server_requested(self, listen_host: str, listen_port: int) -> Any:
        if self.forward is not None:
            return False  # one endpoint per session, as ngrok's gateway
        answered = listen_port or 80
        self.forward = Forward(listen_host, listen_port, answered)
        self.forward_ready.set()
        return _Listener(answered)

    def session_requested(self) -> Any:
        if self.command_channel is not None:
            return False
        return CommandSession(self)

    # The session ----------------------------------------------------------------------

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start(self) -> None:
        conn, fingerprint = self.conn, self._last_accepted
        assert conn is not None and fingerprint is not None
        credential_id, record = self._accepted[fingerprint]
        gateway = self.gateway
        try:
            version = str(conn.get_extra_info("client_version") or "")
            self.authenticated = await gateway.control.authenticate_ssh(
                credential_id, record, self.client_addr, version
            )
        except errors.BurrowError as error:
            self.started.set()
            self.end(f"{error.code}: {error.message}")
            return
        if self._ended:
            gateway.control.end(self.authenticated)
            self.started.set()
            return
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        try:
            _, server_side = await loop.connect_accepted_socket(
                lambda: MuxConnection(client_side=False), ours
            )
            _, bridge = await loop.connect_accepted_socket(lambda: MuxConnection(client_side=True), theirs)
        except BaseException:
            ours.close()
            theirs.close()
            gateway.control.end(self.authenticated)
            self.started.set()
            raise
        agent = AgentConnection(server_side, gateway.control, self.client_addr, gateway.limits, loop.time())
        agent.start_authenticated(self.authenticated)
        self.agent = agent
        gateway.register(agent)
        session = self.authenticated.session
        log.info(
            "ssh session started",
            extra={
                "fields": {"session": session.id, "credential": credential_id, "client": self.client_addr}
            },
        )
        self.started.set()
        self._spawn(self._bridge(bridge))
        self._spawn(self._command_due())
        try:
            await agent.run()
        finally:
            gateway.unregister(agent)
            await bridge.close()
            log.info(
                "ssh session ended",
                extra={"fields": {"session": session.id, "reason": server_side.close_reason}},
            )
            self.end(server_side.close_reason or "session ended")

    async def _command_due(self) -> None:
        """A session with no command within the authentication timeout (``ssh -N``) ends."""
        await asyncio.sleep(self.gateway.limits.auth_timeout)
        if self.command_channel is None:
            self.end("no command: give http, tcp or tls after the host (docs/ssh.md)")

    def end(self, reason: str) -> None:
        """Say why on the command's channel (if any), then disconnect."""
        if self._ended:
            return
        self._ended = True
        channel = self.command_channel
        if channel is not None and not channel.is_closing():
            with contextlib.suppress(Exception):
                channel.write_stderr(f"Session ended: {reason}\n")
                channel.exit(1)
            self._spawn(self._disconnect(reason, channel))
        else:
            self._disconnect_now(reason)

    async def _disconnect(self, reason: str, channel: asyncssh.SSHServerChannel[str]) -> None:
        """Once the client has the channel's last words (it closes the channel, and ssh
        exits), or after a second at most: a disconnect at once could overtake them."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(channel.wait_closed(), 1.0)
        self._disconnect_now(reason)

    def _disconnect_now(self, reason: str) -> None:
        conn = self.conn
        if conn is not None:
            conn.disconnect(asyncssh.DISC_BY_APPLICATION, reason[:200])

    async def _bridge(self, bridge: MuxConnection) -> None:
        """The agent's side of the local muxado connection: what the edge opens to it."""
        while (stream := await bridge.accept_stream()) is not None:
            self._spawn(self._serve_stream(stream))

    async def _serve_stream(self, stream: MuxStream) -> None:
        try:
            kind = struct.unpack(">I", await stream.readexactly(4))[0]
            if kind == StreamType.PROXY:
                size = struct.unpack("<q", await stream.readexactly(8))[0]
                header = json.loads(await stream.readexactly(size))
                await self._proxy(stream, str(header.get("ClientAddr", "")))
                return
            message = await asyncio.wait_for(read_message(stream, self.gateway.limits), COMMAND_READ_TIMEOUT)
            if kind == StreamType.STOP_TUNNEL:
                stop = wire.StopTunnel.parse(message)
                code = f"{stop.error_code}: " if stop.error_code else ""
                # A session holds one tunnel and cannot bind another: it ends with it.
                stream.close()
                self.end(f"tunnel stopped: {code}{stop.message}")
                return
            else:
                await stream.write(json.dumps(wire.ErrorResp().to_json()).encode())
                await stream.write_eof()
            stream.close()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, TimeoutError, errors.BurrowError):
            stream.reset()

    async def _proxy(self, stream: MuxStream, client_addr: str) -> None:
        """One public connection: a forwarded-tcpip channel to the client, spliced to the stream."""
        conn, forward = self.conn, self.forward
        if conn is None or forward is None:
            stream.reset()
            return
        host, _, port_text = client_addr.rpartition(":")
        try:
            reader, writer = await conn.open_connection(
                forward.host, forward.answered, host.strip("[]"), int(port_text or 0)
            )
        except (asyncssh.Error, OSError, ValueError):
            stream.reset()
            return

        async def up() -> None:
            while data := await stream.read():
                writer.write(data)
                await writer.drain()
            writer.write_eof()

        async def down() -> None:
            while data := await reader.read(65536):
                await stream.write(data)
            await stream.write_eof()

        try:
            await asyncio.gather(up(), down())
        except (ConnectionError, asyncssh.Error, OSError):
            stream.reset()
        finally:
            writer.close()
            stream.close()


class CommandSession(asyncssh.SSHServerSession[str]):
    """The session channel: its command (``http ...``) binds the tunnel, and it shows the URL."""

    def __init__(self, owner: SshSession) -> None:
        self.owner = owner
        self.channel: asyncssh.SSHServerChannel[str] | None = None
        self.command: str | None = None

    def connection_made(self, chan: asyncssh.SSHServerChannel[str]) -> None:
        self.channel = chan
        self.owner.command_channel = chan

    def pty_requested(self, *args: Any) -> bool:
        return True

    def shell_requested(self) -> bool:
        self.command = ""
        return True

    def exec_requested(self, command: str) -> bool:
        self.command = command
        return True

    def session_started(self) -> None:
        self.owner._spawn(self._run())

    def eof_received(self) -> bool:
        return True  # keep the channel: the tunnel lives as long as the session

    def data_received(self, data: str, datatype: asyncssh.DataType) -> None:
        if "\x03" in data or "\x04" in data:  # Ctrl+C or Ctrl+D on a terminal
            self.owner.end("closed by the client")

    async def _run(self) -> None:
        owner, channel = self.owner, self.channel
        assert channel is not None
        command = self.command or ""
        words = command.split()
        if not words or words[0] in ("help", "--help", "-h") or "--help" in words:
            channel.write(_HELP)
            channel.exit(0 if words else 1)
            return
        try:
            await asyncio.wait_for(owner.forward_ready.wait(), FORWARD_WAIT)
        except TimeoutError:
            host, port = owner.gateway.address or ("HOST", 0)
            self._refuse(errors.SSH_FORWARD_MISSING(host=host, port=port))
            return
        await owner.started.wait()
        authenticated, forward = owner.authenticated, owner.forward
        if authenticated is None or forward is None or owner.agent is None:
            return
        try:
            parsed = parse_command(command, forward, owner.gateway.has_https)
            bind = wire.Bind.parse(
                {
                    "Proto": parsed.proto,
                    "ForwardsTo": f"ssh client ({owner.client_addr})",
                    "Opts": parsed.opts,
                    "Extra": {},
                }
            )
            answer = await owner.gateway.control.bind(authenticated, bind)
        except errors.BurrowError as error:
            log.info(
                "ssh tunnel refused",
                extra={"fields": {"session": authenticated.session.id, "error": error.code}},
            )
            self._refuse(error)
            return
        session = authenticated.session
        channel.write(
            "Burrow (via SSH) (Ctrl+C to quit)\n\n"
            f"Session     {session.id}\n"
            f"Forwarding  {answer.url}\n"  # to what ssh -R names: only the client knows it
        )

    def _refuse(self, error: errors.BurrowError) -> None:
        channel = self.channel
        assert channel is not None
        channel.write_stderr(f"ERROR:  {error.message}\nERROR:  {error.code}\n")
        self.owner.end(error.code)  # exits the channel, then disconnects
