"""What creating a reserved domain or address adds to the generic create: the name checked
and normalized, an address assigned when none is given, and ngrok's errors when the name is
already someone's (the store's unique indexes decide, so two requests cannot both win)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from burrow.domain import errors, names
from burrow.domain.models import Actor, Principal
from burrow.domain.reserved import is_under, normalize_domain
from burrow.domain.tunnels import Registry, Tunnel
from burrow.store.store import RESERVED_ADDRS, RESERVED_DOMAINS, Store, Taken

Creator = Callable[[Principal, dict[str, Any], Actor | None], Any]


class Reservations:
    def __init__(
        self,
        store: Store,
        base_domain: str,
        tcp_host: str,
        tcp_ports: range,
        registry: Registry,
        server_hosts: frozenset[str] = frozenset(),
    ) -> None:
        self.store = store
        self.server_hosts = server_hosts  # the API's own hosts: no tenant reserves them
        self.registry = registry  # what is bound now: a name another account uses is not reservable
        self.base_domain = base_domain
        self.tcp_host = tcp_host
        self.tcp_ports = tcp_ports

    def _ports_text(self) -> str:
        return f"{self.tcp_ports.start}-{self.tcp_ports.stop - 1}"

    def create_domain(self, principal: Principal, values: dict[str, Any], actor: Actor | None) -> Any:
        domain = normalize_domain(values["domain"], self.base_domain, self.server_hosts)
        values["domain"] = domain
        # A custom domain's CNAME points at a name under --domain, which the operator's DNS
        # sends to the edge; the public listeners route by the original Host either way.
        values["cname_target"] = None if is_under(domain, self.base_domain) else self.base_domain
        # Checked and inserted without yielding to the event loop, so no bind slips between.
        for tunnel in (self.registry.http_tunnel(domain), self.registry.tls_tunnel(domain)):
            if tunnel is not None and self._account_of(tunnel) != principal.account_id:
                raise errors.DOMAIN_IN_USE(name=domain)
        try:
            return self.store.create(RESERVED_DOMAINS, principal.account_id, values, actor)[0]
        except Taken:
            holder = self.store.reservation(domain=domain)
            if holder is not None and holder[0] == principal.account_id:
                raise errors.DOMAIN_ALREADY_RESERVED(name=domain) from None
            raise errors.DOMAIN_RESERVED_BY_OTHER(name=domain) from None

    def create_addr(self, principal: Principal, values: dict[str, Any], actor: Actor | None) -> Any:
        requested = values.get("addr")
        if requested:
            values["addr"] = self._checked_addr(requested)
            if self._in_use_by_another(int(values["addr"].rpartition(":")[2]), principal.account_id):
                raise errors.ADDR_IN_USE(addr=values["addr"])
            try:
                return self.store.create(RESERVED_ADDRS, principal.account_id, values, actor)[0]
            except Taken:
                raise errors.ADDR_ALREADY_RESERVED(addr=values["addr"]) from None
        for _ in range(5):  # another request may take the port we picked; pick again
            taken = self.store.reserved_addrs()
            free = [
                port
                for port in self.tcp_ports
                if f"{self.tcp_host}:{port}" not in taken
                and not self._in_use_by_another(port, principal.account_id)
            ]
            if not free:
                raise errors.NO_FREE_ADDR(host=self.tcp_host, ports=self._ports_text())
            values["addr"] = f"{self.tcp_host}:{secrets.choice(free)}"
            try:
                return self.store.create(RESERVED_ADDRS, principal.account_id, values, actor)[0]
            except Taken:
                continue
        raise errors.NO_FREE_ADDR(host=self.tcp_host, ports=self._ports_text())

    def _account_of(self, tunnel: Tunnel) -> str | None:
        session = self.registry.sessions.get(tunnel.session_id)
        return None if session is None else session.account_id

    def _in_use_by_another(self, port: int, account_id: str) -> bool:
        tunnel = self.registry.tcp_tunnel(port)
        return tunnel is not None and self._account_of(tunnel) != account_id

    def _checked_addr(self, text: str) -> str:
        host, _, port_text = text.rpartition(":")
        port = names.port(port_text)
        if port is None or port not in self.tcp_ports or (host and host.lower() != self.tcp_host.lower()):
            raise errors.ADDRESS_UNAVAILABLE(addr=text, host=self.tcp_host, ports=self._ports_text())
        return f"{self.tcp_host}:{port}"

    def creators(self) -> dict[str, Creator]:
        return {RESERVED_DOMAINS.name: self.create_domain, RESERVED_ADDRS.name: self.create_addr}
