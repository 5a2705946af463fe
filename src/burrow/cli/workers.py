"""``burrow serve --workers N``: N processes on one machine sharing the listeners.

The parent binds every listener once (so a port in use is one error at start, and no
worker races another for a port), prepares the data directory (first account, CA,
certificates) and forks the workers, which inherit the sockets. Each worker is a node of
the cluster (``NAME-wK``) with a relay listener of its own, so a public connection accepted
by one worker reaches an agent held by another through the relay, as between machines.
The parent serves nothing: it restarts a worker that dies (with backoff; the dead worker's
names come free with its lease) and on SIGTERM or SIGINT stops them all gracefully.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, NoReturn

from burrow.api.app import ACCESS_LOG
from burrow.domain.limits import ApiLimits
from burrow.edge.server import BoundSockets, EdgeConfig

from . import node
from .node import CommandError

log = logging.getLogger("burrow.serve")
BACKLOG = 1024
FIRST_BACKOFF = 0.5  # seconds before restarting a worker that died
MAX_BACKOFF = 30.0
STEADY_SECONDS = 10.0  # a worker that ran this long before dying is restarted at once again
STOP_MARGIN = 15.0  # past the grace, seconds before workers that have not stopped are killed


@dataclass
class Listeners:
    """Every socket the workers share, and each worker's own (by worker number, from 1)."""

    api: socket.socket
    edge: BoundSockets | None
    relays: dict[int, socket.socket] = field(default_factory=dict)
    metrics: dict[int, socket.socket] = field(default_factory=dict)
    # Each worker's inbox of handed-over connections, and the end its siblings send to.
    handoffs: dict[int, tuple[socket.socket, socket.socket]] = field(default_factory=dict)

    def all(self) -> list[socket.socket]:
        shared = [self.api]
        if self.edge is not None:
            edge = self.edge
            shared += [s for s in (edge.agent, edge.http, edge.tls, edge.https) if s is not None]
            shared += list(edge.tcp.values())
        own = [*self.relays.values(), *self.metrics.values()]
        return shared + own + [end for pair in self.handoffs.values() for end in pair]


@dataclass
class Worker:
    number: int
    pid: int = 0
    ready_pipe: int | None = None  # the read end; the worker writes once it serves
    ready: bool = False
    started_at: float = 0.0
    backoff: float = FIRST_BACKOFF
    restart_at: float | None = None  # when a dead worker is due to start again


def _bind(host: str, port: int, option: str) -> socket.socket:
    sock = node.listen(host, port, option)
    sock.listen(BACKLOG)  # connections queue here even while a worker restarts
    return sock


def bind_listeners(
    v: dict[str, Any],
    config: EdgeConfig,
    count: int,
    api_addr: tuple[str, int],
    metrics_addr: tuple[str, int] | None,
) -> Listeners:
    """Bind everything, or close what was bound and raise (one error for a port in use)."""
    bound: list[socket.socket] = []

    def bind(host: str, port: int, option: str) -> socket.socket:
        sock = _bind(host, port, option)
        bound.append(sock)
        return sock

    def numbered(addr: tuple[str, int], option: str) -> dict[int, socket.socket]:
        # Worker K takes PORT+K-1: each worker's metrics and relay have an address of their own.
        host, port = addr
        return {k: bind(host, port + k - 1 if port else 0, option) for k in range(1, count + 1)}

    try:
        listeners = Listeners(api=bind(*api_addr, "--api-addr"), edge=None)
        if metrics_addr is not None:
            listeners.metrics = numbered(metrics_addr, "--metrics-addr")
        if v["edge"]:
            settings = config.settings
            listeners.edge = BoundSockets(
                agent=bind(*config.agent_addr, "--agent-addr"),
                http=bind(*config.http_addr, "--http-addr") if config.http_addr else None,
                tls=bind(*config.tls_addr, "--tls-addr") if config.tls_addr else None,
                https=bind(*config.https_addr, "--https-addr") if config.https_addr else None,
                tcp={p: bind(settings.tcp_host, p, "--tcp-ports") for p in settings.tcp_ports},
                relay=None,
            )
            # Port 0 asks for a free port: the logs and the dashboard show the one bound.
            edge = listeners.edge
            config.agent_addr = edge.agent.getsockname()[:2]
            config.http_addr = edge.http.getsockname()[:2] if edge.http else None
            config.tls_addr = edge.tls.getsockname()[:2] if edge.tls else None
            config.https_addr = edge.https.getsockname()[:2] if edge.https else None
            # Without --relay-addr the workers relay to one another on loopback only.
            listeners.relays = numbered(config.relay_addr or ("127.0.0.1", 0), "--relay-addr")
            for number in range(1, count + 1):
                listeners.handoffs[number] = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
                bound.extend(listeners.handoffs[number])
    except BaseException:
        for sock in bound:
            sock.close()
        raise
    return listeners


def prepare(v: dict[str, Any], config: EdgeConfig, listeners: Listeners) -> None:
    """What the workers would otherwise race for: the schema, the first account (its key
    shown once, here), the CA and the certificates in the data directory."""
    store = node.open_store(v)
    try:
        token = node.first_run(store, v)
        if v["edge"]:
            node.edge_for(store, v, _worker_config(config, listeners, 1), None)  # writes the files
    finally:
        store.close()  # no connection crosses the fork
    if token is not None:
        node.show_first_key(token, v, config.server_addr)


def _worker_config(config: EdgeConfig, listeners: Listeners, number: int) -> EdgeConfig:
    if listeners.edge is None:
        return config
    host = config.relay_addr[0] if config.relay_addr else "127.0.0.1"

    def relay_text(worker: int) -> str:  # as the registry shows it (Edge.__init__)
        port = listeners.relays[worker].getsockname()[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    return dataclasses.replace(
        config,
        node_name=f"{config.node_name}-w{number}",
        relay_addr=(host, listeners.relays[number].getsockname()[1]),
        sockets=dataclasses.replace(
            listeners.edge,
            relay=listeners.relays[number],
            handoff_inbox=listeners.handoffs[number][0],
            handoff_siblings={
                relay_text(other): pair[1] for other, pair in listeners.handoffs.items() if other != number
            },
        ),
    )


def supervise(
    v: dict[str, Any],
    config: EdgeConfig,
    api_limits: ApiLimits,
    count: int,
    api_addr: tuple[str, int],
    metrics_addr: tuple[str, int] | None,
) -> None:
    """Run ``count`` workers until SIGTERM or SIGINT; raise CommandError if they cannot start."""
    listeners = bind_listeners(v, config, count, api_addr, metrics_addr)
    try:
        prepare(v, config, listeners)
        Supervisor(v, config, api_limits, listeners, count).run()
    finally:
        for sock in listeners.all():
            sock.close()


class Supervisor:
    def __init__(
        self, v: dict[str, Any], config: EdgeConfig, api_limits: ApiLimits, listeners: Listeners, count: int
    ) -> None:
        self.v = v
        self.config = config
        self.api_limits = api_limits
        self.listeners = listeners
        self.count = count
        self.workers = {number: Worker(number) for number in range(1, count + 1)}
        self.stop_signals = 0
        self.stop_deadline: float | None = None
        self.starting = True  # until every worker has served once; a failure then is fatal
        self.failure: str | None = None

    def run(self) -> None:
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for worker in self.workers.values():
                self._start(worker)
            while any(w.pid for w in self.workers.values()) or not (self.stop_signals or self.failure):
                self._wait_for_ready(0.1)
                self._reap()
                self._restart_due()
                if self.stop_deadline is not None and time.monotonic() > self.stop_deadline:
                    self._send(signal.SIGKILL)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if self.failure is not None:
            raise CommandError(self.failure)
        log.info("all workers stopped")

    # Signals ----------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # A first signal stops the workers gracefully; a second one forces them, as it does
        # a single process.
        self.stop_signals += 1
        if self.stop_deadline is None:
            self.stop_deadline = time.monotonic() + self.v["shutdown_grace"] + STOP_MARGIN
        self._send(signal.SIGTERM)

    def _send(self, signum: signal.Signals) -> None:
        for worker in self.workers.values():
            if worker.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signum)

    # Workers ----------------------------------------------------------------------------

    def _start(self, worker: Worker) -> None:
        read_end, write_end = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        # Signals wait until the worker has its own handlers (and the parent knows its pid).
        stopping = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(read_end)
            self._become_worker(worker.number, write_end, stopping)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stopping)
        os.close(write_end)
        worker.pid, worker.ready_pipe, worker.ready = pid, read_end, False
        worker.started_at, worker.restart_at = time.monotonic(), None
        log.info("worker started", extra={"fields": {"worker": worker.number, "pid": pid}})

    def _wait_for_ready(self, timeout: float) -> None:
        pipes = {w.ready_pipe: w for w in self.workers.values() if w.ready_pipe is not None}
        if not pipes:
            time.sleep(timeout)
            return
        readable, _, _ = select.select(list(pipes), [], [], timeout)
        for pipe in readable:
            worker = pipes[pipe]
            worker.ready = os.read(pipe, 1) == b"1"
            os.close(pipe)
            worker.ready_pipe = None
        if self.starting and all(w.ready for w in self.workers.values()):
            self.starting = False
            log.info("workers ready", extra={"fields": {"workers": self.count}})

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = next((w for w in self.workers.values() if w.pid == pid), None)
            if worker is None:
                continue
            self._exited(worker, os.waitstatus_to_exitcode(status))

    def _exited(self, worker: Worker, code: int) -> None:
        worker.pid = 0
        if worker.ready_pipe is not None:
            os.close(worker.ready_pipe)
            worker.ready_pipe = None
        shown = f"signal {-code}" if code < 0 else f"status {code}"
        fields = {"worker": worker.number, "exit": shown}
        if self.stop_signals or self.failure:
            log.info("worker stopped", extra={"fields": fields})
            return
        if self.starting:
            # A worker that cannot start (a bad certificate, the database refusing) would
            # fail again: stop the others and say so.
            self.failure = f"worker {worker.number} could not start ({shown}); see its error above"
            self.stop_deadline = time.monotonic() + self.v["shutdown_grace"] + STOP_MARGIN
            self._send(signal.SIGTERM)
            return
        ran = time.monotonic() - worker.started_at
        worker.backoff = FIRST_BACKOFF if ran >= STEADY_SECONDS else min(MAX_BACKOFF, worker.backoff * 2)
        worker.restart_at = time.monotonic() + worker.backoff
        log.warning(
            "worker died; restarting it (its names come free with its lease)",
            extra={"fields": {**fields, "restart_in_s": worker.backoff}},
        )

    def _restart_due(self) -> None:
        if self.stop_signals or self.failure:
            return
        for worker in self.workers.values():
            if worker.restart_at is not None and time.monotonic() >= worker.restart_at:
                self._start(worker)

    def _become_worker(self, number: int, ready_pipe: int, blocked: set[signal.Signals]) -> NoReturn:
        """The forked child: serve as worker ``number`` until SIGTERM; never returns."""
        code = 1
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            # Ctrl-C reaches the whole process group: the parent's SIGTERM is the one to obey.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
            _die_with_parent()
            config = _worker_config(self.config, self.listeners, number)  # before the others close
            for other, sock in [*self.listeners.relays.items(), *self.listeners.metrics.items()]:
                if other != number:
                    sock.close()
            for other, (inbox, to_inbox) in self.listeners.handoffs.items():
                (inbox if other != number else to_inbox).close()  # only the worker reads its inbox
            _label_logs(number)

            def ready() -> None:
                os.write(ready_pipe, b"1")
                os.close(ready_pipe)

            node.run_node(
                self.v,
                config,
                self.api_limits,
                node.throttle(*node.rate_texts(self.v), processes=self.count),
                self.listeners.api,
                self.listeners.metrics.get(number),
                show_first_run=False,
                on_ready=ready,
                signals=(signal.SIGTERM,),
            )
            code = 0
        except CommandError as problem:
            log.error(str(problem))
            code = 2
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        except BaseException:
            log.exception("worker failed")
        finally:
            ACCESS_LOG.flush()  # os._exit skips atexit, where it would be flushed
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker when the parent dies (even by SIGKILL), so none is orphaned."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # it died before the call
        os._exit(1)


class _WorkerField(logging.Filter):
    def __init__(self, number: int) -> None:
        super().__init__()
        self.number = number

    def filter(self, record: logging.LogRecord) -> bool:
        fields = getattr(record, "fields", None)
        record.fields = {"worker": self.number, **(fields if isinstance(fields, dict) else {})}
        return True


def _label_logs(number: int) -> None:
    """Every JSON log line of this worker names it."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerField(number))
