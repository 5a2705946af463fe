"""The error catalogue: every error the API and edge can answer, with ngrok's codes.

Messages follow ngrok's published texts (docs/errors) with the placeholders filled.
Where ngrok has no code for a situation (an unknown path, a method not allowed, a body
over the size cap, an internal error), Burrow uses codes in the 9xxxx range, which
ngrok does not use, so that every error body still carries an ``error_code``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class BurrowError(Exception):
    """An error with an HTTP status and an ngrok-style code, safe to show the caller."""

    def __init__(self, code: str, status: int, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        self.headers: dict[str, str] = {}  # response headers it needs, e.g. Retry-After


@dataclass(frozen=True)
class ErrorKind:
    code: str
    status: int
    template: str
    details: dict[str, Any] = field(default_factory=dict)

    def __call__(self, **values: object) -> BurrowError:
        return BurrowError(self.code, self.status, self.template.format(**values))


def rate_limited(error: BurrowError, retry_after: int) -> BurrowError:
    """``error`` with the ``Retry-After`` header (whole seconds) that every 429 carries."""
    error.headers["Retry-After"] = str(retry_after)
    error.details["retry_after"] = retry_after
    return error


SUPPORTED_VERSIONS = "2"
_DOCS = "Check your API client implementation and review the API documentation."

# Transport, versioning and request shape.
MISSING_VERSION = ErrorKind(
    "ERR_NGROK_218",
    400,
    "Your request has not specified an API version. Include the version you wish to use "
    f"in the Ngrok-Version header. Supported versions: {SUPPORTED_VERSIONS}.",
)
BAD_VERSION = ErrorKind(
    "ERR_NGROK_217",
    400,
    "The provided API version {version!r} is invalid or unsupported. Supported versions: "
    f"{SUPPORTED_VERSIONS}. Check your API client implementation.",
)
UNSUPPORTED_CONTENT_TYPE = ErrorKind(
    "ERR_NGROK_210",
    415,
    "The content type you specified {content_type!r} is not supported by the API. Use application/json.",
)
MISSING_CONTENT_TYPE = ErrorKind(
    "ERR_NGROK_216",
    415,
    "You did not provide a Content-Type with your request. Use application/json.",
)
UNEXPECTED_BODY = ErrorKind(
    "ERR_NGROK_211",
    400,
    "The {method} request you made does not expect a body, but you provided one. " + _DOCS,
)
UNREADABLE_BODY = ErrorKind(
    "ERR_NGROK_212", 400, "The server was unable to read the complete request body. " + _DOCS
)
UNPARSABLE_BODY = ErrorKind(
    "ERR_NGROK_213",
    400,
    "The application/json request body could not be parsed: {reason}. " + _DOCS,
)
UNKNOWN_FIELD = ErrorKind(
    "ERR_NGROK_214",
    400,
    "The request parameter {name!r} is unknown and not expected. The supported fields are: "
    "{supported}. " + _DOCS,
)
INVALID_FIELD = ErrorKind(
    "ERR_NGROK_215",
    400,
    "The value provided for the request parameter {name!r} is invalid: {reason}. " + _DOCS,
)
ID_MISMATCH = ErrorKind(
    "ERR_NGROK_215",
    400,
    "The value provided for the request parameter 'id' is invalid: {body_id!r} is not the id in the "
    "path, {path_id!r}. " + _DOCS,
)
INVALID_ID = ErrorKind("ERR_NGROK_223", 400, "{value!r} is not a valid resource reference identifier.")
WRONG_ID_PREFIX = ErrorKind(
    "ERR_NGROK_227", 400, "The ID {value!r} is invalid. Expected an ID with a prefix of {prefix!r}."
)
WRONG_ID_PREFIXES = ErrorKind(
    "ERR_NGROK_243",
    400,
    "The ID {value!r} is invalid. Expected an ID with prefix one of {prefixes}.",
)
INVALID_QUERY = ErrorKind(
    "ERR_NGROK_230", 400, "The query part of the requested URI is invalid: {reason}. " + _DOCS
)
UNKNOWN_QUERY_PARAMETER = ErrorKind(
    "ERR_NGROK_231",
    400,
    "The query part of the requested URI includes unknown parameters: {unknown}. The supported "
    "parameters are: {supported}. " + _DOCS,
)
REPEATED_QUERY_PARAMETER = ErrorKind(
    "ERR_NGROK_232",
    400,
    "The request must specify only a single value for the {name!r} parameter but got {count}: "
    "{values}. " + _DOCS,
)
LIMIT_OUT_OF_RANGE = ErrorKind(
    "ERR_NGROK_233", 400, "The page size limit must be between 1 and {max} but {value} was provided."
)
LIMIT_NOT_A_NUMBER = ErrorKind(
    "ERR_NGROK_244",
    400,
    "The page size limit must be a number between 1 and {max} but {value!r} was provided.",
)
INVALID_FILTER = ErrorKind("ERR_NGROK_250", 400, "Invalid CEL query: {detail}")
FILTER_OVER_BUDGET = ErrorKind(
    "ERR_NGROK_90250",
    400,
    "The CEL query needs more work than this server allows per page ({rows} items checked "
    "outside the database, or {seconds} s in all). Add conditions the database answers (==, !=, in, <, >, "
    "startsWith and contains on string fields, comparisons of created_at).",
)
RATE_LIMITED = ErrorKind(
    "ERR_NGROK_226",
    429,
    "Your API key is rate limited to {max} API requests per {interval}. Retry in {retry} s.",
)
ADDRESS_RATE_LIMITED = ErrorKind(
    "ERR_NGROK_226",
    429,
    "Your address is rate limited to {max} API requests per {interval}. Retry in {retry} s.",
)
AUTH_THROTTLED = ErrorKind(
    "ERR_NGROK_90429",
    429,
    "Too many failed authentication attempts from your address (more than {max} per {interval}); "
    "until they age out, its tokens are checked at most once a second. Retry in {retry} s.",
)

# Authentication.
MISSING_AUTHORIZATION = ErrorKind(
    "ERR_NGROK_200",
    401,
    "The API requires that you set the Authorization header for authentication: "
    "'Authorization: Bearer <API key>'.",
)
UNPARSABLE_AUTHORIZATION = ErrorKind(
    "ERR_NGROK_201",
    401,
    "The API requires that you use Bearer authentication via the Authorization header. "
    "It could not parse the header in this request.",
)
REPEATED_AUTHORIZATION = ErrorKind(
    "ERR_NGROK_201",
    401,
    "The request carries {count} Authorization headers. The API requires exactly one: "
    "'Authorization: Bearer <API key>'.",
)
MALFORMED_API_KEY = ErrorKind(
    "ERR_NGROK_202",
    401,
    "The API authentication you specified does not look like a valid credential.",
)
INVALID_API_KEY = ErrorKind(
    "ERR_NGROK_203",
    401,
    "The API authentication you specified is properly formed, but it is invalid.",
)
AUTHTOKEN_AS_API_KEY = ErrorKind(
    "ERR_NGROK_207",
    401,
    "The authentication you specified is actually an authtoken, not an API key token. "
    "Check your records for an API key with the form FIRSTPART_SECONDPART.",
)
API_KEY_ID_AS_TOKEN = ErrorKind(
    "ERR_NGROK_208",
    401,
    "The authentication you specified is actually an API key ID, not an API key token. "
    "Check your records for an API key with the form FIRSTPART_SECONDPART.",
)

# Resource fields and ownership.
INVALID_ACL_RULE = ErrorKind(
    "ERR_NGROK_600",
    400,
    "Invalid ACL rule. An ACL rule must be '*' or start with 'bind:'. The bind value must match "
    "the format of a domain, address, or label. You specified: {rule!r}.",
)
DESCRIPTION_TOO_LONG = ErrorKind(
    "ERR_NGROK_604",
    400,
    "A description is limited to {max} bytes; you have entered {value} bytes.",
)
METADATA_TOO_LONG = ErrorKind(
    "ERR_NGROK_605", 400, "Metadata is limited to {max} bytes; you have entered {value} bytes."
)
NOTHING_TO_UPDATE = ErrorKind(
    "ERR_NGROK_606",
    400,
    "The update failed because no values were provided. Specify at least one value.",
)
OWNER_IS_PERMANENT_CREDENTIAL = ErrorKind(
    "ERR_NGROK_627",
    400,
    "The auth token is already owned by a user and cannot be re-assigned ownership.",
)
OWNER_IS_PERMANENT_KEY = ErrorKind(
    "ERR_NGROK_628",
    400,
    "The API key is already owned by a user and cannot be re-assigned ownership.",
)
NOT_ADMIN_FOR_OWNER = ErrorKind("ERR_NGROK_630", 403, "You must be an admin to set credential ownership.")
NO_OWNER = ErrorKind("ERR_NGROK_634", 400, "No credential owner could be determined: {reason}.")
OWNER_INACTIVE = ErrorKind("ERR_NGROK_636", 400, "The credential owner is marked as inactive on the account.")
NOT_PERMITTED = ErrorKind(
    "ERR_NGROK_635",
    403,
    "API access requires that the caller owns this {resource} or is an account admin.",
)
ADMINS_ONLY = ErrorKind(
    "ERR_NGROK_635", 403, "API access to {resource}s requires that the caller is an account admin."
)
BOT_NAME_REQUIRED = ErrorKind("ERR_NGROK_215", 400, "A bot user must have a non-empty name.")

# Burrow's own codes (ngrok has none for these).
NOT_FOUND = ErrorKind("ERR_NGROK_90404", 404, "Resource not found.")
PATH_NOT_FOUND = ErrorKind("ERR_NGROK_90404", 404, "Not Found")
METHOD_NOT_ALLOWED = ErrorKind(
    "ERR_NGROK_90405", 405, "The method {method} is not allowed on {path}. Allowed: {allowed}."
)
BODY_TOO_LARGE = ErrorKind(
    "ERR_NGROK_90413", 413, "The request body is larger than the limit of {max} bytes."
)
INTERNAL_ERROR = ErrorKind(
    "ERR_NGROK_90500", 500, "An internal error occurred. It has been logged; operation {op}."
)
REGISTRY_UNAVAILABLE = ErrorKind(
    "ERR_NGROK_90502", 503, "The tunnel registry cannot be reached now; try again shortly."
)
# The API's HTTP layer, before a request reaches a route (docs/limits.md).
MALFORMED_REQUEST = ErrorKind("ERR_NGROK_90400", 400, "The request is not valid HTTP/1.1: {reason}.")
REQUEST_TIMEOUT = ErrorKind(
    "ERR_NGROK_90408", 408, "The request did not arrive in time: {reason}. Send it promptly."
)
HEAD_TOO_LARGE = ErrorKind(
    "ERR_NGROK_90431", 431, "The request line and headers are larger than the limit of {max} bytes."
)
TOO_MANY_HEADERS = ErrorKind("ERR_NGROK_90431", 431, "The request has more than {max} header fields.")
TOO_MANY_CONNECTIONS = ErrorKind(
    "ERR_NGROK_90503", 503, "The server takes no more connections now: {reason}. Try again later."
)
DATABASE_UNAVAILABLE = ErrorKind(
    "ERR_NGROK_90504", 503, "The database is unavailable; Burrow reconnects by itself. Try again shortly."
)
STORAGE_FULL = ErrorKind(
    "ERR_NGROK_90507",
    503,
    "The server's storage is full, so nothing was written. Its operator must free space; try again later.",
)
REVOCATION_UNCHECKED = ErrorKind(
    "ERR_NGROK_90506",
    503,
    "The server cannot check revocations (its database has been unreachable for {seconds}s), "
    "so it starts no sessions and binds nothing now. Try again shortly.",
)
HTTP_VERSION_UNSUPPORTED = ErrorKind(
    "ERR_NGROK_90505", 505, "HTTP/{version} is not supported: use HTTP/1.1 (or HTTP/1.0)."
)

# The edge: errors answered to agents in a message's "Error" field.
AGENT_TOKEN_MALFORMED = ErrorKind(
    "ERR_NGROK_105", 400, "The authtoken you specified does not look like a proper ngrok authtoken."
)
AGENT_TOKEN_INVALID = ErrorKind(
    "ERR_NGROK_107", 400, "The authtoken you specified is properly formed, but it is invalid."
)
AGENT_OWNER_INACTIVE = ErrorKind(
    "ERR_NGROK_107",
    400,
    "The authtoken you specified is properly formed, but its owner is inactive on the account.",
)
CREDENTIAL_REVOKED = ErrorKind(
    "ERR_NGROK_300", 400, "The authtoken credential {id} has been revoked and is no longer valid."
)
BIND_INVALID = ErrorKind("ERR_NGROK_301", 400, "The bind payload you specified is not valid: {reason}.")
ADDRESS_UNAVAILABLE = ErrorKind(
    "ERR_NGROK_307",
    400,
    "The address {addr} is not available: this server binds TCP tunnels on {host}, ports {ports}.",
)
TCP_ADDRESS_DENIED = ErrorKind(
    "ERR_NGROK_308",
    400,
    "The credential ACL policy does not permit binding this address: {addr}. Credential: {id}.",
)
HOSTNAME_DENIED = ErrorKind(
    "ERR_NGROK_316",
    400,
    "The credential ACL policy does not permit binding this name: {name}. Credential: {id}.",
)
DOMAIN_RESERVED_ELSEWHERE = ErrorKind(
    "ERR_NGROK_320",
    400,
    "This domain is reserved for another account. Failed to create an endpoint with the domain "
    "{name} for the account {account}. If you have reserved this name, make sure that you are using "
    "an authtoken credential for the appropriate account.",
)
ADDR_RESERVED_ELSEWHERE = ErrorKind(
    "ERR_NGROK_90320",
    400,
    "The address {addr} is reserved for another account. Failed to bind it for the account {account}.",
)
NOT_RESERVED = ErrorKind(
    "ERR_NGROK_7118",
    400,
    "The {what} {name} is not reserved by your account, and this server binds only reserved "
    "{what}s (--require-reservation). Reserve it first (POST /reserved_{what}s).",
)
DOMAIN_ALREADY_RESERVED = ErrorKind(
    "ERR_NGROK_413", 400, "This domain is already reserved for your account. Failed to reserve {name}."
)
DOMAIN_RESERVED_BY_OTHER = ErrorKind(
    "ERR_NGROK_414", 400, "This domain is already reserved for another account. Failed to reserve {name}."
)
DOMAIN_IN_USE = ErrorKind(
    "ERR_NGROK_430",
    400,
    "Another account is running an active tunnel on the domain {name}. You may not reserve "
    "domains that are actively in use.",
)
ADDR_IN_USE = ErrorKind(
    "ERR_NGROK_90430",
    400,
    "Another account is running an active tunnel on the address {addr}. You may not reserve "
    "addresses that are actively in use.",
)
ADDR_ALREADY_RESERVED = ErrorKind(
    "ERR_NGROK_90414", 400, "The address {addr} is already reserved. Failed to reserve it."
)
NO_FREE_ADDR = ErrorKind(
    "ERR_NGROK_90415",
    400,
    "Every address this server binds TCP tunnels on ({host}, ports {ports}) is reserved.",
)
DOMAIN_REQUIRED = ErrorKind("ERR_NGROK_90416", 400, "A reserved domain needs a domain name.")
# Uploaded TLS certificates (ngrok has no published codes for these: Burrow's range).
CERTIFICATE_PEM_INVALID = ErrorKind(
    "ERR_NGROK_90440", 400, "The certificate_pem could not be parsed: {reason}."
)
PRIVATE_KEY_PEM_INVALID = ErrorKind(
    "ERR_NGROK_90441",
    400,
    "The private_key_pem could not be parsed: it must be one unencrypted PEM-encoded private key.",
)
CERTIFICATE_KEY_MISMATCH = ErrorKind(
    "ERR_NGROK_90442", 400, "The private key does not match the public key of the certificate."
)
CERTIFICATE_EXPIRED = ErrorKind("ERR_NGROK_90443", 400, "The certificate expired at {not_after}.")
CERTIFICATE_NOT_YET_VALID = ErrorKind(
    "ERR_NGROK_90444", 400, "The certificate is not valid before {not_before}."
)
CERTIFICATE_KEY_UNSUPPORTED = ErrorKind(
    "ERR_NGROK_90445", 400, "The certificate's key type is not supported: use RSA, ECDSA or Ed25519."
)
CERTIFICATE_IS_PERMANENT = ErrorKind(
    "ERR_NGROK_90447", 400, "A TLS certificate's PEM cannot be changed: upload a new certificate."
)
CERTIFICATE_REQUIRED = ErrorKind(
    "ERR_NGROK_90446", 400, "A TLS certificate needs both certificate_pem and private_key_pem."
)
# A reserved domain's certificate_id (an uploaded certificate served for the domain).
CERTIFICATE_UNKNOWN = ErrorKind(
    "ERR_NGROK_90448",
    400,
    "The certificate_id {certificate_id!r} is not a TLS certificate of this account (/tls_certificates).",
)
CERTIFICATE_NOT_COVERING = ErrorKind(
    "ERR_NGROK_90449",
    400,
    "The TLS certificate {certificate_id!r} does not cover {domain!r}: its subject alternative names "
    "are {names}.",
)
CERTIFICATE_ID_WITH_POLICY = ErrorKind(
    "ERR_NGROK_90450",
    400,
    "A reserved domain takes either a certificate_id or a certificate_management_policy, not both: {reason}.",
)
CERTIFICATE_IN_USE = ErrorKind(
    "ERR_NGROK_90451",
    400,
    "The TLS certificate is in use by the reserved domain {domain!r}: set its certificate_id to another "
    "certificate (or empty) first.",
)
SSH_PUBLIC_KEY_INVALID = ErrorKind("ERR_NGROK_90460", 400, "The public_key could not be parsed: {reason}.")
SSH_PUBLIC_KEY_REQUIRED = ErrorKind("ERR_NGROK_90461", 400, "An SSH credential needs a public_key.")
SSH_PUBLIC_KEY_TAKEN = ErrorKind(
    "ERR_NGROK_90462", 409, "This public key is already registered as an SSH credential."
)
SSH_PUBLIC_KEY_IS_PERMANENT = ErrorKind(
    "ERR_NGROK_90463",
    400,
    "An SSH credential's public_key cannot be changed: create a new SSH credential for the new key.",
)
OWNER_IS_PERMANENT_SSH_CREDENTIAL = ErrorKind(
    "ERR_NGROK_90464", 400, "The SSH credential is already owned and cannot be re-assigned ownership."
)
SSH_COMMAND_INVALID = ErrorKind("ERR_NGROK_90465", 400, "The SSH tunnel command is not valid: {reason}.")
SSH_KEY_UNKNOWN = ErrorKind(
    "ERR_NGROK_90467", 400, "The SSH public key is not registered as an SSH credential (/ssh_credentials)."
)
SSH_USER_UNSUPPORTED = ErrorKind(
    "ERR_NGROK_90468", 400, "The SSH user {user!r} is not supported: connect as v2 (ssh ... v2@HOST)."
)
SSH_FORWARD_MISSING = ErrorKind(
    "ERR_NGROK_90466",
    400,
    "No remote forward was requested: start the session with ssh -R, e.g. "
    "ssh -R 0:localhost:8080 v2@{host} -p {port} http",
)
UNSUPPORTED_VALUE = ErrorKind(
    "ERR_NGROK_90216",
    400,
    "The request parameter {name!r} cannot be set on this Burrow server: {reason}. Leave it empty.",
)
INVALID_DOMAIN = ErrorKind("ERR_NGROK_326", 400, "The name {name!r} is not a valid domain name.")
SERVERS_NAME = ErrorKind(
    "ERR_NGROK_326",
    400,
    "The name {name!r} is not a valid domain name for a tunnel: IP addresses, localhost names, the "
    "base domain itself and this server's own host are the server's, never an endpoint's.",
)
ENDPOINT_OPTION_UNSUPPORTED = ErrorKind(
    "ERR_NGROK_90301",
    400,
    "The endpoint option {option!r} is not enforced by this Burrow server, so the endpoint was not "
    "started: remove the option.",
)
ENDPOINT_OPTION_INVALID = ErrorKind(
    "ERR_NGROK_90302", 400, "The endpoint option {option!r} is invalid: {reason}."
)
BASIC_AUTH_USERNAME_EMPTY = ErrorKind(
    "ERR_NGROK_359", 400, "Invalid basic auth credential. Username must not be zero length."
)
BASIC_AUTH_PASSWORD_LENGTH = ErrorKind(
    "ERR_NGROK_360",
    400,
    "Invalid basic auth credential. Password must be between {min} and {max} characters, got {got}.",
)
BASIC_AUTH_USERNAME_INVALID = ErrorKind(
    "ERR_NGROK_15011",
    400,
    "Invalid basic auth credential. Username {username!r} fails to meet requirements of RFC 7617 "
    "#2.1: {reason}",
)
BASIC_AUTH_PASSWORD_INVALID = ErrorKind(
    "ERR_NGROK_15012",
    400,
    "Invalid basic auth credential. The password of user {username!r} fails to meet requirements "
    "of RFC 7617 #2.1: {reason}",
)
CIRCUIT_BREAKER_THRESHOLD = ErrorKind(
    "ERR_NGROK_361",
    400,
    "Invalid circuit breaker configuration, error threshold percentage must be between 0.0 and 1.0 "
    "inclusive, was {value}.",
)
TRAFFIC_POLICY_UNPARSABLE = ErrorKind(
    "ERR_NGROK_2236", 400, "The traffic policy was not able to be parsed: {error}"
)
TRAFFIC_POLICY_INVALID = ErrorKind(
    "ERR_NGROK_9026", 400, "The TrafficPolicy you provided is invalid: {error}."
)
INVALID_CIDR = ErrorKind("ERR_NGROK_362", 400, "Invalid IP restriction configuration, invalid CIDR: {cidr}")
WEBHOOK_PROVIDER_UNSUPPORTED = ErrorKind(
    "ERR_NGROK_364",
    400,
    "Webhook provider {provider!r} is not supported. Supported providers: [{supported}]",
)
WEBHOOK_SECRET_MISSING = ErrorKind(
    "ERR_NGROK_15007", 400, "The Webhook Verification secret was not specified."
)
HEADER_VALUE_INVALID = ErrorKind(
    "ERR_NGROK_1624", 400, "The value of header {name!r} is not a valid HTTP header value: {reason}."
)
MUTUAL_TLS_CA_INVALID = ErrorKind(
    "ERR_NGROK_1900",
    400,
    "The provided certificate is in an unknown or unsupported format. The error encountered while "
    "parsing was: {reason!r}",
)
UNSUPPORTED_PROTO = ErrorKind("ERR_NGROK_332", 400, "{proto!r} is not a supported tunnel protocol.")
ENDPOINT_ONLINE = ErrorKind(
    "ERR_NGROK_334",
    400,
    "The endpoint {url} is already online. Either stop your existing endpoint first, or use a "
    "different name.",
)
RANDOM_TCP_DENIED = ErrorKind(
    "ERR_NGROK_356",
    400,
    "The credential ACL policy does not permit binding random TCP addresses. Credential: {id}.",
)
LABEL_DENIED = ErrorKind(
    "ERR_NGROK_399",
    400,
    "The credential ACL policy does not permit binding this label: {labels}. Credential: {id}.",
)
SESSIONS_RATE_LIMITED = ErrorKind(
    "ERR_NGROK_90430",
    429,
    "The authtoken credential {id} may start at most {max} agent sessions per {interval}. "
    "Retry in {retry} s.",
)
NO_COMMON_VERSION = ErrorKind(
    "ERR_NGROK_811",
    400,
    "Could not negotiate a protocol version. Requested: {requested}, Supported: 3, 2.",
)

# The edge: answers to public clients that an endpoint's options refuse.
BASIC_AUTH_FAILED = ErrorKind(
    "ERR_NGROK_90401",
    401,
    "This endpoint requires HTTP basic authentication: the credentials are missing or wrong.",
)
CIRCUIT_BREAKER_OPEN = ErrorKind("ERR_NGROK_3202", 503, "Circuit breaker tripped")
WEBHOOK_VERIFICATION_FAILED = ErrorKind("ERR_NGROK_3204", 403, "Request failed webhook verification")
IP_RESTRICTED = ErrorKind("ERR_NGROK_3205", 403, "Request blocked by Endpoints IP Restriction")
# A Traffic Policy's jwt-validation: the token is missing or invalid (401), its issuer or
# audience is not allowed (403), or the issuer's keys cannot be had now (503, fail closed).
JWT_UNAUTHORIZED = ErrorKind("ERR_NGROK_3401", 401, "JWT validation failed: {reason}.")
JWT_FORBIDDEN = ErrorKind("ERR_NGROK_3403", 403, "JWT validation failed: {reason}.")
JWT_KEYS_UNAVAILABLE = ErrorKind("ERR_NGROK_90508", 503, "JWT validation failed: {reason}.")
