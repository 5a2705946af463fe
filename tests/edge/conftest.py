"""Running the unmodified ngrok agent SDK for the edge tests."""

from __future__ import annotations

import json
import select
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ROOT, BurrowServer

SDK_PYTHON = ROOT / ".venvs" / "ngrok-sdk" / "bin" / "python"
AGENT = Path(__file__).with_name("sdk_agent.py")


class Agent:
    def __init__(self, process: subprocess.Popen[str], ready: dict[str, Any]) -> None:
        self.process = process
        self.ready = ready

    def url(self, name: str) -> str:
        entry = self.ready["ready"][name]
        assert "url" in entry, entry
        return str(entry["url"])

    def error(self, name: str) -> list[str]:
        return list(self.ready["ready"][name].get("error", []))

    def wait_event(self, matches: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any] | None:
        """The first event line the agent prints that ``matches``, within ``timeout`` seconds."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.process.stdout], [], [], left)
            line = self.process.stdout.readline() if ready else ""
            if not line:
                return None
            event = json.loads(line)
            if matches(event):
                return event  # type: ignore[no-any-return]
        return None

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def start_agent() -> Iterator[Callable[..., Agent]]:
    agents: list[Agent] = []

    def start(server: BurrowServer, token: str, endpoints: list[dict[str, Any]], **extra: Any) -> Agent:
        if not SDK_PYTHON.exists():
            pytest.fail(
                "the agent SDK's environment is missing: run 'make test' (it builds .venvs/ngrok-sdk)"
            )
        config = {
            "token": token,
            "server_addr": server.agent_addr,
            "ca": str(server.ca_path),
            "endpoints": endpoints,
            **extra,
        }
        process = subprocess.Popen(
            [str(SDK_PYTHON), str(AGENT), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline() if ready else ""
        if not line:
            process.kill()
            pytest.fail(f"the agent printed nothing: {process.stderr.read() if process.stderr else ''}")
        agent = Agent(process, json.loads(line))
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.stop()
