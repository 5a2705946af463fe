"""The agent protocol's messages: parsed once with keys in any case and types checked,
serialised once, and the round trip loses nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from burrow.domain.errors import BurrowError
from burrow.edge import wire

text = st.text(max_size=20)
ints = st.integers(min_value=-(2**62), max_value=2**62)
refusals = st.none() | st.builds(
    wire.Refusal,
    code=st.from_regex(r"ERR_NGROK_[0-9]{1,5}", fullmatch=True),
    message=st.text(max_size=40).filter(lambda m: not m.startswith("\n")),
)
auth_extras = st.builds(
    wire.AuthExtra,
    **{name: text for name, _ in wire.AuthExtra._STRINGS},
    **{name: ints for name, _ in wire.AuthExtra._INTEGERS},
    **{name: st.booleans() for name, _ in wire.AuthExtra._BOOLEANS},
)
labels = st.dictionaries(text, text, max_size=3)
json_values = st.recursive(
    st.none() | st.booleans() | ints | text, lambda inner: st.lists(inner, max_size=3), max_leaves=5
)

MESSAGES: list[tuple[Any, st.SearchStrategy[Any]]] = [
    (wire.Auth, st.builds(wire.Auth, st.lists(text, max_size=3).map(tuple), text, auth_extras)),
    (
        wire.AuthResp,
        st.builds(
            wire.AuthResp,
            text,
            text,
            st.builds(wire.AuthRespExtra, text, text, text, text, ints, text, text),
            st.none(),
        ),
    ),
    (wire.AuthResp, st.builds(wire.AuthResp, text, text, st.just(wire.AuthRespExtra()), refusals)),
    (
        wire.BindResp,
        st.builds(wire.BindResp, text, text, text, st.dictionaries(text, json_values), text, refusals),
    ),
    (wire.StartTunnelWithLabel, st.builds(wire.StartTunnelWithLabel, labels, text, text, text)),
    (wire.StartTunnelWithLabelResp, st.builds(wire.StartTunnelWithLabelResp, text, refusals)),
    (wire.Unbind, st.builds(wire.Unbind, text)),
    (wire.ErrorResp, st.builds(wire.ErrorResp, refusals)),
    (
        wire.PatchTunnelState,
        st.builds(
            wire.PatchTunnelState,
            text,
            st.none() | text,
            st.none() | text,
            st.none() | text,
            st.none() | st.booleans(),
            st.none() | text,
        ),
    ),
    (wire.SrvInfo, st.just(wire.SrvInfo())),
    (wire.SrvInfoResp, st.builds(wire.SrvInfoResp, text)),
    (wire.StopTunnel, st.builds(wire.StopTunnel, text, text, text)),
    (wire.Stop, st.just(wire.Stop())),
    (wire.Restart, st.just(wire.Restart())),
    (wire.Update, st.builds(wire.Update, text, st.booleans())),
    (wire.ProxyHeader, st.builds(wire.ProxyHeader, text, text, text, text, st.booleans())),
]


CASES = st.sampled_from([str.lower, str.upper, str.swapcase])


def recased(value: Any, case: Any) -> Any:
    """``value`` with its field names in another case (Go agents differ from the SDK); the
    keys of Labels and Opts are the agent's data, not field names, and stay."""
    if isinstance(value, dict):
        return {
            case(key): item if key in ("Labels", "Opts") else recased(item, case)
            for key, item in value.items()
        }
    return value


@pytest.mark.parametrize(("kind", "strategy"), MESSAGES, ids=[kind.__name__ for kind, _ in MESSAGES])
@given(data=st.data())
def test_round_trip(kind: Any, strategy: st.SearchStrategy[Any], data: st.DataObject) -> None:
    message = data.draw(strategy)
    sent = json.loads(json.dumps(message.to_json()))  # through real JSON
    assert kind.parse(sent) == message
    if kind not in (wire.BindResp,):  # BindResp's Opts are the agent's own keys, echoed as they are
        assert kind.parse(recased(sent, data.draw(CASES))) == message


opts_keys = st.sampled_from(
    [
        "Hostname",
        "hostname",
        "Subdomain",
        "Domain",
        "Addr",
        "URL",
        "Url",
        "TrafficPolicy",
        "Auth",
        "ProxyProto",
    ]
)


@given(
    proto=st.sampled_from(wire.PROTOS),
    opts=st.dictionaries(opts_keys, st.none() | text, max_size=4),
    extra=st.builds(wire.BindExtra, text, text, text, text, text, st.none() | st.lists(text).map(tuple)),
    ids=text,
)
def test_bind_round_trip_keeps_the_agents_spelling(
    proto: str, opts: dict[str, Any], extra: wire.BindExtra, ids: str
) -> None:
    if len({key.lower() for key in opts}) < len(opts):
        with pytest.raises(BurrowError) as error:
            wire.Bind.parse({"Proto": proto, "Opts": opts})
        assert error.value.code == "ERR_NGROK_301" and "given twice" in error.value.message
        return
    message = {"Id": ids, "Proto": proto, "ForwardsTo": "", "ForwardsProto": "", "Opts": opts}
    message["Extra"] = extra.to_json()
    bind = wire.Bind.parse(message)
    assert bind.to_json() == message  # the Opts come back with the agent's keys as it spelled them
    assert wire.Bind.parse(json.loads(json.dumps(bind.to_json()))) == bind
    named = {key.lower(): value or "" for key, value in opts.items()}
    if proto == "tcp":
        assert bind.opts.addr == named.get("addr", "") and bind.opts.hostname == ""
    else:
        assert bind.opts.hostname == named.get("hostname", "") and bind.opts.addr == ""
    assert bind.opts.url == named.get("url", "") and bind.extra == extra


def test_a_current_generation_bind_is_parsed_and_carried() -> None:
    captured = {
        "Id": "",
        "Proto": "https",
        "ForwardsTo": "app://vm/x?pid=9254",
        "ForwardsProto": "",
        "Opts": {
            "URL": "https://app2.go.example",
            "Domain": "",
            "Hostname": "",
            "LocalURLScheme": "",
            "HostHeaderRewrite": False,
            "Policy": None,
            "TrafficPolicy": "on_http_request: []\n",
        },
        "Extra": {
            "Name": "n",
            "Token": "",
            "IPPolicyRef": "",
            "Metadata": "m",
            "Description": "d",
            "Bindings": ["internal"],
            "PoolingEnabled": True,
        },
    }
    bind = wire.Bind.parse(captured)
    assert bind.opts.url == "https://app2.go.example" and bind.opts.traffic_policy == "on_http_request: []\n"
    assert bind.extra == wire.BindExtra("", "", "m", "n", "d", ("internal",), True)
    assert bind.opts.key("localurlscheme") == "LocalURLScheme"


def test_auth_reads_both_spellings_of_the_authtoken_and_its_heartbeats() -> None:
    for key in ("AuthToken", "Authtoken", "authtoken"):
        auth = wire.Auth.parse({"Version": ["2"], "Extra": {key: "t", "HeartbeatInterval": 10**10}})
        assert auth.extra.auth_token == "t" and auth.extra.heartbeat_interval == 10**10
    assert wire.Auth.parse({}) == wire.Auth()  # every field has its empty value


@pytest.mark.parametrize(
    ("kind", "message", "code", "named"),
    [
        (wire.Auth, [], "ERR_NGROK_90300", "Auth must be an object"),
        (wire.Auth, {"Version": "2"}, "ERR_NGROK_90300", "Auth.Version"),
        (wire.Auth, {"Version": [True]}, "ERR_NGROK_90300", "Auth.Version"),
        (wire.Auth, {"Extra": "x"}, "ERR_NGROK_90300", "Auth.Extra must be an object"),
        (wire.Auth, {"Extra": {"AuthToken": 5}}, "ERR_NGROK_105", "authtoken"),
        (wire.Auth, {"Extra": {"OS": 5}}, "ERR_NGROK_90300", "Auth.Extra.OS must be a string"),
        (wire.Auth, {"Extra": {"HeartbeatInterval": "10s"}}, "ERR_NGROK_90300", "HeartbeatInterval"),
        (wire.Auth, {"Extra": {"HeartbeatInterval": True}}, "ERR_NGROK_90300", "HeartbeatInterval"),
        (wire.Auth, {"ClientId": "a", "clientid": "b"}, "ERR_NGROK_90300", "given twice"),
        (wire.Bind, {"Proto": "udp"}, "ERR_NGROK_332", "udp"),
        (wire.Bind, {"Proto": 1}, "ERR_NGROK_301", "Bind.Proto must be a string"),
        (wire.Bind, {"Proto": "http", "Opts": []}, "ERR_NGROK_301", "Bind.Opts must be an object"),
        (wire.Bind, {"Proto": "http", "Opts": {"Hostname": 7}}, "ERR_NGROK_301", "Bind.Opts.Hostname"),
        (wire.Bind, {"Proto": "tcp", "Opts": {"Addr": ["x"]}}, "ERR_NGROK_301", "Bind.Opts.Addr"),
        (wire.Bind, {"Proto": "tls", "Opts": {"URL": {}}}, "ERR_NGROK_301", "Bind.Opts.URL"),
        (wire.Bind, {"Proto": "http", "Opts": {"Policy": "x"}}, "ERR_NGROK_301", "Bind.Opts.Policy"),
        (wire.Bind, {"Proto": "http", "Id": 3}, "ERR_NGROK_301", "Bind.Id must be a string"),
        (wire.Bind, {"Proto": "http", "Extra": {"Bindings": "public"}}, "ERR_NGROK_301", "Bindings"),
        (wire.Bind, {"Proto": "http", "Extra": {"PoolingEnabled": 1}}, "ERR_NGROK_301", "PoolingEnabled"),
        (wire.StartTunnelWithLabel, {"Labels": {"a": 1}}, "ERR_NGROK_301", "Labels"),
        (wire.StartTunnelWithLabel, {"Labels": ["a"]}, "ERR_NGROK_301", "Labels"),
        (wire.Unbind, {"Id": None, "ID": "x"}, "ERR_NGROK_301", "given twice"),
        (wire.Unbind, {"Id": 5}, "ERR_NGROK_301", "Unbind.Id must be a string"),
    ],
)
def test_wrong_types_are_refused_naming_the_field(kind: Any, message: Any, code: str, named: str) -> None:
    with pytest.raises(BurrowError) as error:
        kind.parse(message)
    assert error.value.code == code and named.lower() in error.value.message.lower(), error.value.message


def test_a_refusal_becomes_the_error_string_only_on_the_wire() -> None:
    refusal = wire.Refusal.of(BurrowError("ERR_NGROK_107", 400, "The authtoken is invalid."))
    answer = wire.AuthResp(error=refusal).to_json()
    assert answer == {
        "Version": "",
        "ClientId": "",
        "Error": "The authtoken is invalid.\n\nERR_NGROK_107\n",
        "Extra": {},
    }
    assert wire.Refusal.from_wire("the agent's own words") == wire.Refusal("", "the agent's own words")
    assert wire.Refusal.from_wire("") is None


def test_stream_types_and_heartbeats() -> None:
    assert wire.StreamType.START_TUNNEL_WITH_LABEL == 7 and wire.StreamType.HEARTBEAT == 0xFFFFFFFF
    assert wire.StreamType.PROXY.prefix() == b"\x00\x00\x00\x03"
    assert wire.Heartbeat.decode(b"abcd").encode() == b"abcd"
    with pytest.raises(ValueError):
        wire.Heartbeat.decode(b"abc")
