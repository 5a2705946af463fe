"""``Client`` and ``AsyncClient`` stay twins: the same services, the same methods, the same signatures."""

from __future__ import annotations

import inspect

from burrow.client import AsyncClient, Client


def _services(client: object) -> dict[str, type]:
    """The client's services (``client.credentials``, ...) by attribute name."""
    return {
        name: type(value) for name, value in vars(client).items() if type(value).__name__.endswith("sClient")
    }


def _public_methods(service: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(service, inspect.isfunction)
        if not name.startswith("_")
    }


def _as_sync(signature: inspect.Signature) -> str:
    # The async twin of a Listing is an AsyncListing; everything else must match exactly.
    return str(signature).replace("AsyncListing", "Listing")


def test_every_sync_service_method_has_an_async_twin_with_the_same_signature() -> None:
    sync = _services(Client("key", base_url="http://127.0.0.1:9"))
    asynchronous = _services(AsyncClient("key", base_url="http://127.0.0.1:9"))
    assert set(sync) == set(asynchronous) and len(sync) == 12
    for name, service in sync.items():
        twin = asynchronous[name]
        methods, twin_methods = _public_methods(service), _public_methods(twin)
        assert set(methods) == set(twin_methods), name
        for method, signature in methods.items():
            assert not inspect.iscoroutinefunction(getattr(service, method)), (name, method)
            assert inspect.iscoroutinefunction(getattr(twin, method)), (name, method)
            assert str(signature) == _as_sync(twin_methods[method]), (name, method)


def test_the_twin_check_sees_a_difference() -> None:
    """The test of the test: a parameter only one twin has is a different signature."""

    class Sync:
        def list(self, before_id: str | None = None, limit: int | None = None) -> None: ...

    class Async:
        async def list(self, before_id: str | None = None) -> None: ...

    assert str(_public_methods(Sync)["list"]) != _as_sync(_public_methods(Async)["list"])
