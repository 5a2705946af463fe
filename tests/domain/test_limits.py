"""Connection caps: the admission counter, and fitting every listener's caps to the file limit."""

from __future__ import annotations

from burrow.domain.limits import (
    FIXED_DESCRIPTORS,
    PUBLIC_LISTENERS,
    Admission,
    AgentLimits,
    ApiLimits,
    PublicLimits,
    fit_to_descriptors,
)


def test_admission_caps_each_listener_and_each_client_over_all_listeners() -> None:
    admission = Admission(max_connections=2, max_per_client=3)
    assert admission.admit("10.0.0.1", "http") is None
    assert admission.admit("10.0.0.2", "http") is None
    assert admission.admit("10.0.0.3", "http") == "the listener has 2 connections open"
    assert admission.admit("10.0.0.1", "tls") is None  # another listener has its own cap
    assert admission.admit("10.0.0.1", "tcp") is None
    # The per-client cap counts the client's connections on every listener.
    assert admission.admit("10.0.0.1", "https") == "3 connections from 10.0.0.1 are open"
    assert admission.total == 4
    admission.release("10.0.0.1", "http")
    assert admission.admit("10.0.0.3", "http") is None
    assert admission.admit("10.0.0.1", "https") is None
    assert admission.total == 5


def test_admission_refusal_counts_nothing_and_release_frees_the_slot() -> None:
    admission = Admission(max_connections=1, max_per_client=1)
    assert admission.admit("a") is None
    assert admission.admit("a") is not None and admission.admit("b") is not None
    assert admission.total == 1
    admission.release("a")
    assert admission.total == 0
    assert admission.admit("b") is None


def test_caps_that_fit_are_kept() -> None:
    api, agent, public = ApiLimits(), AgentLimits(), PublicLimits()
    assert fit_to_descriptors(api, agent, public, 1_000_000, 103) == (api, agent, public)


def test_caps_are_fitted_to_a_small_file_limit() -> None:
    api, agent, public = fit_to_descriptors(ApiLimits(), AgentLimits(), PublicLimits(), 1024, 103)
    share = (1024 - FIXED_DESCRIPTORS - 103) // 2  # 428
    # The API and agent listeners share one half in proportion to what they asked for.
    assert (api.max_connections, agent.max_connections) == (144, 283)
    assert api.max_connections + agent.max_connections <= share
    # The public listeners share the other half equally.
    assert public.max_connections == share // PUBLIC_LISTENERS == 107
    assert public.max_connections * PUBLIC_LISTENERS <= share
    assert public.max_connections_per_client == 64
    # Only the caps change.
    assert public.head_timeout == PublicLimits().head_timeout and agent.auth_timeout == 10.0


def test_no_cap_goes_below_8_and_per_client_caps_follow_their_listener() -> None:
    # Nothing is left for clients at all: every listener still takes a few.
    api, agent, public = fit_to_descriptors(ApiLimits(), AgentLimits(), PublicLimits(), 200, 150)
    for limits in (api, agent, public):
        assert limits.max_connections == 8 and limits.max_connections_per_client == 8


def test_public_caps_are_fitted_even_when_the_api_and_agent_caps_fit() -> None:
    api, agent, public = fit_to_descriptors(
        ApiLimits(max_connections=10), AgentLimits(max_connections=10), PublicLimits(), 4096, 3
    )
    assert (api.max_connections, agent.max_connections) == (10, 10)
    assert public.max_connections == (4096 - FIXED_DESCRIPTORS - 3) // 2 // PUBLIC_LISTENERS
