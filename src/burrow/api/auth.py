"""API key authentication: ``Authorization: Bearer <API key token>``."""

from __future__ import annotations

from starlette.requests import Request

from burrow.domain import errors, ids, tokens
from burrow.domain.models import Principal
from burrow.store.ratelimit import Throttle
from burrow.store.store import Store


def client_address(request: Request) -> str:
    """The peer's IP address: what limits per address count (a proxy's, behind one)."""
    client = request.scope.get("client")
    return str(client[0]) if client else "unknown"


def authenticate(request: Request, store: Store, throttle: Throttle, address: str) -> Principal:
    """Who the API key in the request is; failures count against the client address."""
    headers = request.headers.getlist("authorization")
    if not headers:
        raise errors.MISSING_AUTHORIZATION()
    if len(headers) > 1:
        # Proxies and servers disagree on which of several wins; refuse rather than pick one.
        raise errors.REPEATED_AUTHORIZATION(count=len(headers))
    header = headers[0]
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise errors.UNPARSABLE_AUTHORIZATION()
    principal = store.cached_principal(token)
    if principal is not None:
        return principal  # authenticated since the last write: no check, so never throttled
    # A token that has authenticated before is checked at once, whatever its address's
    # failures: a guesser sharing the address cannot spend its checks (guessing one would be
    # guessing the token). It is still checked, so a deleted key fails as any other.
    if not store.authenticated_before(token):
        throttle.before_check(address)
    try:
        return _check_token(store, token)
    except errors.BurrowError as error:
        # Only a token checked and found wrong is a failure; the database being away (503)
        # is the server's trouble, not a guess.
        if error.status == 401:
            throttle.failed(address)
        raise


def _check_token(store: Store, token: str) -> Principal:
    key_id = tokens.resource_id(token, ids.API_KEY, other_prefixes=(ids.CREDENTIAL,))
    if key_id is tokens.TokenProblem.OTHER_KIND:
        raise errors.AUTHTOKEN_AS_API_KEY()
    if key_id is tokens.TokenProblem.ID_NOT_TOKEN and token.startswith(f"{ids.API_KEY}_"):
        raise errors.API_KEY_ID_AS_TOKEN()
    if not isinstance(key_id, str):
        raise errors.MALFORMED_API_KEY()
    principal = store.authenticate_api_key(key_id, token)
    if principal is None:
        raise errors.INVALID_API_KEY()
    return principal
