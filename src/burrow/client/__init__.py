"""Burrow's Python client: ``Client`` and ``AsyncClient`` for Burrow's ngrok-compatible API.

Code written for the official ``ngrok.Client`` runs by changing the import::

    from burrow.client import Client

    with Client("<API key>", base_url="http://127.0.0.1:4080") as client:
        credential = client.credentials.create(description="laptop", acl=["bind:*.example.com"])
        print(credential.token)  # shown once
        for item in client.credentials.list(limit=50):  # pages are fetched as you go
            print(item.id, item.acl)

``BURROW_API_KEY`` and ``BURROW_API_URL`` supply the defaults. Errors raise
:class:`Error` (404: :class:`NotFoundError`) with ngrok's error code.
"""

from ._client import (
    AsyncClient,
    AsyncListing,
    Client,
    Listing,
)
from ._errors import Error, NotFoundError
from ._models import (
    ApiKey,
    AuditEvent,
    BotUser,
    Credential,
    Endpoint,
    Ref,
    ReservedAddr,
    ReservedDomain,
    SshCredential,
    SubjectAlternativeNames,
    TlsCertificate,
    Tunnel,
    TunnelSession,
)

__all__ = [
    "ApiKey",
    "AsyncClient",
    "AsyncListing",
    "AuditEvent",
    "BotUser",
    "Client",
    "Credential",
    "Endpoint",
    "Error",
    "Listing",
    "NotFoundError",
    "Ref",
    "ReservedAddr",
    "ReservedDomain",
    "SshCredential",
    "SubjectAlternativeNames",
    "TlsCertificate",
    "Tunnel",
    "TunnelSession",
]
