"""Typed streams and agent messages: the exact bytes and keys agents send and require."""

from __future__ import annotations

import json
import struct
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from burrow.edge.messages import (
    AuthRequest,
    AuthResponse,
    AuthResponseExtra,
    BindRequest,
    BindResponse,
    CommandResponse,
    JsonObjectReader,
    MessageError,
    ProxyHeader,
    SrvInfo,
    SrvInfoResponse,
    StartTunnelWithLabel,
    StartTunnelWithLabelResponse,
    StopTunnel,
    StreamType,
    Unbind,
    UnbindResponse,
    Update,
    decode_stream_type,
    encode_proxy_preamble,
    encode_stream_type,
    get_field,
    parse_json_object,
    parse_proxy_header,
)

# Typed streams ------------------------------------------------------------------------


def test_stream_type_numbers() -> None:
    assert {t.name: t.value for t in StreamType} == {
        "AUTH": 0,
        "BIND": 1,
        "UNBIND": 2,
        "PROXY": 3,
        "RESTART": 4,
        "STOP": 5,
        "UPDATE": 6,
        "START_TUNNEL_WITH_LABEL": 7,
        "SRV_INFO": 8,
        "STOP_TUNNEL": 9,
        "HEARTBEAT": 0xFFFFFFFF,
    }


def test_stream_type_prefix_is_a_big_endian_u32() -> None:
    assert encode_stream_type(StreamType.BIND) == b"\x00\x00\x00\x01"
    assert encode_stream_type(StreamType.HEARTBEAT) == b"\xff\xff\xff\xff"
    assert decode_stream_type(b"\x00\x00\x00\x07") is StreamType.START_TUNNEL_WITH_LABEL
    assert decode_stream_type(b"\xff\xff\xff\xff") is StreamType.HEARTBEAT
    unknown = decode_stream_type(b"\x00\x00\x01\x00")
    assert unknown == 256 and not isinstance(unknown, StreamType)
    with pytest.raises(MessageError):
        decode_stream_type(b"\x00\x00\x00")
    with pytest.raises(ValueError):
        encode_stream_type(1 << 32)


# JSON helpers -------------------------------------------------------------------------


def test_keys_are_matched_whatever_their_case() -> None:
    message = {"authtoken": "go", "Region": "eu"}
    assert get_field(message, "AuthToken") == "go"
    assert get_field(message, "region") == "eu"
    assert get_field(message, "Missing", "default") == "default"
    assert get_field({"AuthToken": "exact", "authtoken": "other"}, "AuthToken") == "exact"


def test_parse_json_object_refuses_non_objects() -> None:
    assert parse_json_object(b'{"a":1}') == {"a": 1}
    for bad in (b"[1]", b'"text"', b"{", b"\xff", "null"):
        with pytest.raises(MessageError):
            parse_json_object(bad)


# Auth ---------------------------------------------------------------------------------

SDK_AUTH = {
    "Version": ["3", "2"],
    "ClientId": "",
    "Extra": {
        "OS": "linux",
        "Arch": "amd64",
        "AuthToken": "token-from-sdk",
        "Version": "1.4.0",
        "UserAgent": "ngrok-python/1.4.0 ngrok-rust/0.14.0-pre.14",
        "HeartbeatInterval": 10_000_000_000,
        "HeartbeatTolerance": 15_000_000_000,
        "Metadata": "",
        "ClientType": "library/official/python",
    },
}


def test_auth_request_from_the_sdk_and_from_go_agents() -> None:
    sdk = AuthRequest.from_json(json.dumps(SDK_AUTH).encode())
    assert sdk.version == ("3", "2") and sdk.client_id == ""
    assert sdk.auth_token == "token-from-sdk"
    assert (sdk.heartbeat_interval_ns, sdk.heartbeat_tolerance_ns) == (10_000_000_000, 15_000_000_000)
    go = AuthRequest.from_json('{"Version":["2"],"ClientId":"ts_old","Extra":{"Authtoken":"token-from-go"}}')
    assert go.version == ("2",) and go.client_id == "ts_old" and go.auth_token == "token-from-go"
    assert go.heartbeat_interval_ns == 0  # absent: the default
    assert AuthRequest.from_json(sdk.to_json()) == sdk
    assert sdk.to_dict() == SDK_AUTH


def test_auth_request_types_are_checked() -> None:
    with pytest.raises(MessageError):
        AuthRequest.from_json('{"Version":"3"}')
    with pytest.raises(MessageError):
        AuthRequest.from_json('{"Version":["3"],"Extra":[]}')
    with pytest.raises(MessageError):
        AuthRequest.from_json('{"Version":["3"],"Extra":{"AuthToken":7}}').auth_token  # noqa: B018
    with pytest.raises(MessageError):
        AuthRequest.from_json('{"Version":["3"],"Extra":{"HeartbeatInterval":true}}').heartbeat_interval_ns  # noqa: B018
    assert AuthRequest.from_json('{"version":[3],"clientid":null}').version == ("3",)


def test_auth_response_always_has_every_key() -> None:
    response = AuthResponse(version="3", client_id="ts_123", extra=AuthResponseExtra(region="local"))
    assert json.loads(response.to_json()) == {
        "Version": "3",
        "ClientId": "ts_123",
        "Error": "",
        "Extra": {
            "Version": "",
            "Region": "local",
            "Cookie": "",
            "AccountName": "",
            "SessionDuration": 0,
            "PlanName": "",
            "Banner": "",
        },
    }
    refusal = AuthResponse(version="", client_id="", error="bad token\n\nERR_NGROK_107\n")
    assert json.loads(refusal.to_json())["Error"] == "bad token\n\nERR_NGROK_107\n"
    assert AuthResponse.from_json(refusal.to_json()) == refusal
    # Rust writes its optional fields as null.
    parsed = AuthResponse.from_json(
        '{"Version":"3","ClientId":"x","Extra":{"Region":null,"SessionDuration":null}}'
    )
    assert parsed.extra == AuthResponseExtra()


# Bind and friends ---------------------------------------------------------------------

SDK_BIND = {
    "Id": "",
    "Proto": "https",
    "ForwardsTo": "localhost:8000",
    "ForwardsProto": "",
    "Opts": {"Hostname": "", "Subdomain": "", "Auth": "", "HostHeaderRewrite": False, "Compression": None},
    "Extra": {"Token": "", "IPPolicyRef": "", "Metadata": "", "Bindings": []},
}


def test_bind_request() -> None:
    bind = BindRequest.from_json(json.dumps(SDK_BIND))
    assert (bind.id, bind.proto, bind.forwards_to) == ("", "https", "localhost:8000")
    assert bind.opts["Compression"] is None and bind.extra["Bindings"] == []
    assert bind.to_dict() == SDK_BIND
    v2 = BindRequest.from_json('{"id":"t1","proto":"tcp","opts":{"Addr":""}}')  # no ForwardsTo
    assert (v2.id, v2.proto, v2.forwards_to, v2.opts) == ("t1", "tcp", "", {"Addr": ""})
    with pytest.raises(MessageError):
        BindRequest.from_json('{"Proto":"http","Opts":"x"}')


def test_bind_response_has_every_key_the_sdk_requires() -> None:
    response = BindResponse(
        id="tn_1", url="https://a.example", proto="https", opts={"Hostname": "a.example"}, error=""
    )
    assert json.loads(response.to_json()) == {
        "Id": "tn_1",
        "URL": "https://a.example",
        "Proto": "https",
        "Opts": {"Hostname": "a.example"},
        "Extra": {"Token": ""},
        "Error": "",
    }
    assert set(json.loads(BindResponse(error="no").to_json())) == {
        "Id",
        "URL",
        "Proto",
        "Opts",
        "Extra",
        "Error",
    }
    assert BindResponse.from_json(response.to_json()) == response


def test_labeled_tunnels_unbind_and_server_info() -> None:
    labeled = StartTunnelWithLabel.from_json('{"Labels":{"edge":"edghts_1"},"ForwardsTo":"x","Metadata":"m"}')
    assert labeled == StartTunnelWithLabel(labels={"edge": "edghts_1"}, forwards_to="x", metadata="m")
    assert labeled.to_dict() == {
        "Labels": {"edge": "edghts_1"},
        "ForwardsTo": "x",
        "ForwardsProto": "",
        "Metadata": "m",
    }
    with pytest.raises(MessageError):
        StartTunnelWithLabel.from_json('{"Labels":{"edge":1}}')
    assert json.loads(StartTunnelWithLabelResponse(id="tn_2").to_json()) == {"Id": "tn_2", "Error": ""}
    assert StartTunnelWithLabelResponse.from_json('{"Id":"tn_2"}') == StartTunnelWithLabelResponse(id="tn_2")
    assert Unbind.from_json('{"Id":"tn_3"}') == Unbind("tn_3") and Unbind("tn_3").to_dict() == {"Id": "tn_3"}
    assert json.loads(UnbindResponse().to_json()) == {"Error": ""}
    assert UnbindResponse.from_json('{"Error":"gone"}').error == "gone"
    assert SrvInfo.from_json(b"{}") == SrvInfo() and SrvInfo().to_json() == b"{}"
    assert json.loads(SrvInfoResponse(region="local").to_json()) == {"Region": "local"}
    assert SrvInfoResponse.from_json('{"region":"eu"}').region == "eu"


def test_server_to_agent_commands() -> None:
    stop = StopTunnel(id="tn_1", message="revoked", error_code="ERR_NGROK_123")
    assert json.loads(stop.to_json()) == {"Id": "tn_1", "Message": "revoked", "ErrorCode": "ERR_NGROK_123"}
    assert StopTunnel.from_json('{"Id":"tn_1","ErrorCode":null}') == StopTunnel(id="tn_1")
    assert json.loads(Update(version="3.1").to_json()) == {"Version": "3.1", "PermitMajorVersion": False}
    assert Update.from_json('{"PermitMajorVersion":true}').permit_major_version is True
    assert CommandResponse.from_json("{}").error == ""  # Rust omits a null Error
    assert json.loads(CommandResponse(error="cannot").to_json()) == {"Error": "cannot"}
    with pytest.raises(MessageError):
        Update.from_json('{"PermitMajorVersion":"yes"}')


def test_messages_accept_parsed_dicts_too() -> None:
    parsed: dict[str, Any] = {"id": "tn_9"}
    assert Unbind.from_json(parsed) == Unbind("tn_9")


# Proxy streams ------------------------------------------------------------------------


def test_proxy_preamble_bytes() -> None:
    header = ProxyHeader(id="tn_1", client_addr="203.0.113.9:5555", proto="https")
    preamble = encode_proxy_preamble(header)
    assert preamble[:4] == b"\x00\x00\x00\x03"
    (length,) = struct.unpack("<q", preamble[4:12])  # little-endian, unlike the rest
    body = preamble[12:]
    assert length == len(body)
    assert json.loads(body) == {
        "Id": "tn_1",
        "ClientAddr": "203.0.113.9:5555",
        "Proto": "https",
        "EdgeType": "",
        "PassthroughTLS": False,
    }


def test_parse_proxy_header_incrementally() -> None:
    header = ProxyHeader(id="tn_1", client_addr="[::1]:80", proto="tcp", edge_type="1", passthrough_tls=True)
    stream = encode_proxy_preamble(header)[4:] + b"raw bytes follow"
    for cut in range(len(stream) - len(b"raw bytes follow")):
        assert parse_proxy_header(stream[:cut]) is None
    parsed = parse_proxy_header(stream)
    assert parsed is not None
    assert parsed[0] == header and stream[parsed[1] :] == b"raw bytes follow"
    with pytest.raises(MessageError):
        parse_proxy_header(struct.pack("<q", -1))
    with pytest.raises(MessageError):
        parse_proxy_header(struct.pack("<q", 1 << 40))
    with pytest.raises(MessageError):
        parse_proxy_header(struct.pack("<q", 2) + b"[]")


# Reading one object without FIN -------------------------------------------------------


def test_reader_finds_the_end_of_an_object_across_chunks() -> None:
    text = b' \n{"A":"}{\\"\\\\","B":[1,{"C":"]"}],"D":"\\u00e9"}' + b"leftover"
    for size in (1, 2, 3, 5, len(text)):
        reader = JsonObjectReader()
        result = None
        for start in range(0, len(text), size):
            result = reader.feed(text[start : start + size])
            if result is not None:
                break
        assert result == {"A": '}{"\\', "B": [1, {"C": "]"}], "D": "\u00e9"}, size
        assert (reader.remainder + text[start + size :]).endswith(b"leftover")


def test_reader_refuses_what_cannot_be_one_object() -> None:
    with pytest.raises(MessageError):
        JsonObjectReader().feed(b"[1,2]")
    with pytest.raises(MessageError):
        JsonObjectReader().feed(b'{"a":1,}')  # balanced, but not JSON
    small = JsonObjectReader(max_size=16)
    assert small.feed(b'{"a":"') is None
    with pytest.raises(MessageError):
        small.feed(b"x" * 20)
    with pytest.raises(MessageError):
        JsonObjectReader(max_size=8).feed(b'{"a":"long"}')
    done = JsonObjectReader()
    assert done.feed(b"{}") == {}
    with pytest.raises(MessageError):
        done.feed(b"{}")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet=st.characters(codec="utf-8")),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    message=st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    cuts=st.lists(st.integers(min_value=0), max_size=8),
    ensure_ascii=st.booleans(),
)
def test_reader_agrees_with_json_however_the_bytes_are_cut(
    message: dict[str, Any], cuts: list[int], ensure_ascii: bool
) -> None:
    data = json.dumps(message, ensure_ascii=ensure_ascii).encode()
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    reader = JsonObjectReader()
    results = [reader.feed(data[a:b]) for a, b in pairwise(points) if b > a]
    assert results[-1] == message
    assert all(result is None for result in results[:-1])
