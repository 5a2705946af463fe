"""The SSH gateway's commands (``http --basic-auth u:p`` with the -R forward) read into the
Bind an agent would send; what Burrow cannot do is refused with a clear reason."""

from __future__ import annotations

import pytest

from burrow.domain import errors
from burrow.edge.ssh import Command, Forward, parse_command


def forward(host: str = "localhost", port: int = 0) -> Forward:
    return Forward(host, port, port or 80)


@pytest.mark.parametrize(
    ("text", "given", "expected"),
    [
        ("http", forward(), Command("http")),
        ("http", forward("", 80), Command("http")),
        ("HTTP", forward("app.example.com", 80), Command("http", {"Hostname": "app.example.com"})),
        ("http", forward("app.example.com", 443), Command("https", {"Hostname": "app.example.com"})),
        (
            "http --basic-auth 'a:b c' --basic-auth=d:e",
            forward(),
            Command(
                "http",
                {
                    "BasicAuth": {
                        "Credentials": [
                            {"Username": "a", "Cleartext_Password": "b c"},
                            {"Username": "d", "Cleartext_Password": "e"},
                        ]
                    }
                },
            ),
        ),
        (
            "tcp --cidr-allow 10.0.0.0/8 --cidr-deny 10.1.0.0/16",
            forward(),
            Command("tcp", {"IPRestriction": {"Allow_CIDRs": ["10.0.0.0/8"], "Deny_CIDRs": ["10.1.0.0/16"]}}),
        ),
        ("tcp", forward("localhost", 20005), Command("tcp", {"Addr": ":20005"})),
        ("tcp", forward("127.0.0.1", 20005), Command("tcp", {"Addr": "127.0.0.1:20005"})),
        ("tls", forward("secure.example.com", 443), Command("tls", {"Hostname": "secure.example.com"})),
        ("tls", forward(), Command("tls")),
    ],
)
def test_commands_read_as_binds(text: str, given: Forward, expected: Command) -> None:
    assert parse_command(text, given, has_https=True) == expected


@pytest.mark.parametrize(
    ("text", "given", "reason"),
    [
        ("", forward(), "no command"),
        ("ftp", forward(), "unknown command 'ftp'"),
        ("http --oauth google", forward(), "'--oauth' is not supported"),
        ("http --traffic-policy-url=https://x/p.yml", forward(), "'--traffic-policy-url' is not supported"),
        ("http --basic-auth", forward(), "--basic-auth needs a value"),
        ("http --basic-auth nocolon", forward(), "USER:PASSWORD"),
        ("tcp --basic-auth a:b", forward(), "for http endpoints"),
        ("http", forward("x.example.com", 8080), "port 80 or 443"),
        ("tls", forward("x.example.com", 80), "port 443"),
        ("http 'unbalanced", forward(), "quotation"),
    ],
)
def test_what_cannot_be_done_is_refused(text: str, given: Forward, reason: str) -> None:
    with pytest.raises(errors.BurrowError) as refused:
        parse_command(text, given, has_https=True)
    assert refused.value.code == errors.SSH_COMMAND_INVALID.code
    assert reason in refused.value.message


def test_an_https_endpoint_needs_the_https_listener() -> None:
    with pytest.raises(errors.BurrowError, match="no HTTPS listener"):
        parse_command("http", forward("x.example.com", 443), has_https=False)
