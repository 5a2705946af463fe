"""The agent listener by name (--agent-name, else connect.DOMAIN): on its certificate, in the
server_addr agents are told, and never a tenant's hostname."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from burrow.cli.node import CommandError, make_edge
from burrow.cli.serving import advertised_agent_port, edge_config, name_agents
from burrow.domain import errors
from burrow.domain.reserved import ReservationPolicy
from burrow.edge.server import EdgeConfig
from burrow.store.store import Store


def config(domain: str = "tunnels.example.com", agent_addr: str = "0.0.0.0:4443") -> EdgeConfig:
    return edge_config(agent_addr, "127.0.0.1:8080", "127.0.0.1:8443", "20000-20001", "127.0.0.1", domain, [])


def test_the_name_is_derived_from_the_domain_or_given() -> None:
    derived = config()
    name_agents(derived, None)
    assert (derived.agent_name, derived.server_addr) == (
        "connect.tunnels.example.com",
        "connect.tunnels.example.com:4443",
    )
    given = config()
    name_agents(given, "Agents.Example.NET.")
    assert (given.agent_name, given.server_addr) == ("agents.example.net", "agents.example.net:4443")
    # Under localhost (the default domain) the derived name may not resolve: the address it is.
    local = config("burrow.localhost", "127.0.0.1:4443")
    name_agents(local, None)
    assert (local.agent_name, local.server_addr) == ("connect.burrow.localhost", "127.0.0.1:4443")


def test_behind_a_balancer_agents_are_told_its_port() -> None:
    named = config()
    name_agents(named, None, advertised_agent_port("http=80,agent=443"))
    assert named.server_addr == "connect.tunnels.example.com:443"
    assert advertised_agent_port("http=80") is None
    with pytest.raises(CommandError, match="agent=PORT"):
        advertised_agent_port("agent=0")


@pytest.mark.parametrize("bad", ["not a name", "-x.example.com", "tunnels.example.com", "example.com", ""])
def test_bad_names_are_refused(bad: str) -> None:
    with pytest.raises(CommandError, match="--agent-name"):
        name_agents(config(), bad)


def test_no_tenant_binds_the_agent_name() -> None:
    named = config()
    name_agents(named, None)
    policy = ReservationPolicy(named.settings.domain, server_hosts=named.settings.server_hosts)
    with pytest.raises(errors.BurrowError) as refused:
        policy.check_hostname("connect.tunnels.example.com", "acct_1", None)
    assert refused.value.code == "ERR_NGROK_326"
    policy.check_hostname("app.tunnels.example.com", "acct_1", None)  # others are the tenants'


def test_the_local_ca_certificate_carries_the_name(tmp_path: Path) -> None:
    named = config()
    name_agents(named, "agents.example.net")
    store = Store.open(tmp_path)
    try:
        make_edge(store, tmp_path, named, None, None)
    finally:
        store.close()
    certificate = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "agents.example.net" in san.get_values_for_type(x509.DNSName)
    assert "localhost" in san.get_values_for_type(x509.DNSName)
