"""A traffic policy document: YAML or JSON text to plain data, within size and nesting limits.

JSON is a subset of YAML 1.2 (close enough for PyYAML's safe loader), so one parser reads both.
The text is refused before parsing when it is over :data:`MAX_DOCUMENT_BYTES`, and the parsed
data when it nests deeper than :data:`MAX_NESTING`, so a tenant cannot make the server chew on
a huge or deeply recursive document. YAML aliases are refused too (``*ref`` can fan one node out
into exponential size: the "billion laughs").
"""

from __future__ import annotations

import json
from typing import Any, Final

import yaml

from .. import errors

MAX_DOCUMENT_BYTES: Final = 64 * 1024
MAX_NESTING: Final = 16


class _NoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", event.start_mark)
        return super().compose_node(parent, index)


def load_document(text: str | bytes) -> object:
    """The parsed document, or ERR_NGROK_2236 naming what is wrong."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise errors.TRAFFIC_POLICY_UNPARSABLE(
            error=f"the document is {len(raw)} bytes, over the limit of {MAX_DOCUMENT_BYTES}"
        )
    try:
        data: object = yaml.load(raw.decode("utf-8"), Loader=_NoAliasLoader)
    except UnicodeDecodeError:
        raise errors.TRAFFIC_POLICY_UNPARSABLE(error="the document is not UTF-8") from None
    except RecursionError:  # nesting PyYAML's recursive composer cannot take
        raise errors.TRAFFIC_POLICY_UNPARSABLE(
            error=f"the document nests deeper than {MAX_NESTING} levels"
        ) from None
    except yaml.YAMLError as error:
        raise errors.TRAFFIC_POLICY_UNPARSABLE(error=" ".join(str(error).split())) from None
    if _depth(data, 0) > MAX_NESTING:
        raise errors.TRAFFIC_POLICY_UNPARSABLE(error=f"the document nests deeper than {MAX_NESTING} levels")
    return data


def _depth(data: object, level: int) -> int:
    if level > MAX_NESTING:
        return level  # deep enough to refuse; don't walk further
    if isinstance(data, dict):
        return max((_depth(value, level + 1) for value in data.values()), default=level + 1)
    if isinstance(data, list):
        return max((_depth(value, level + 1) for value in data), default=level + 1)
    return level


REDACTED: Final = "<redacted>"


def redacted(text: str) -> str:
    """The document as Burrow keeps and shows it (the API's ``traffic_policy``, the
    dashboard): basic-auth passwords and webhook secrets replaced by :data:`REDACTED`;
    ``text`` itself when it holds none. Called on documents that compiled."""
    data = load_document(text)
    return json.dumps(data) if _redact(data) else text


_PRIVATE_JWK: Final = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")  # private or symmetric key material


def _redact_jwks(config: dict[str, Any]) -> bool:
    """A jwt-validation's inline JWKS keeps public keys only: private parts given by mistake
    (and ``oct`` secrets, which Burrow ignores) are blanked."""
    keys: Any = config
    for name in ("jws", "keys", "sources", "inline_jwks", "keys"):
        keys = keys.get(name) if isinstance(keys, dict) else None
    found = False
    for key in keys if isinstance(keys, list) else ():
        for name in _PRIVATE_JWK:
            if isinstance(key, dict) and name in key:
                key[name], found = REDACTED, True
    return found


def _redact(data: object) -> bool:
    """Blank the secrets of every action in ``data`` (in place); whether there were any."""
    found = False
    if isinstance(data, list):
        for item in data:
            found = _redact(item) or found
    elif isinstance(data, dict):
        config = data.get("config")
        if isinstance(config, dict) and data.get("type") == "basic-auth":
            credentials = config.get("credentials")
            if isinstance(credentials, list):
                config["credentials"] = [f"{str(c).partition(':')[0]}:{REDACTED}" for c in credentials]
                found = True
        elif isinstance(config, dict) and data.get("type") == "verify-webhook" and "secret" in config:
            config["secret"] = REDACTED
            found = True
        elif isinstance(config, dict) and data.get("type") == "jwt-validation":
            found = _redact_jwks(config) or found
        else:
            for value in data.values():
                found = _redact(value) or found
    return found
