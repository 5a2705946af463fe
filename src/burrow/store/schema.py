"""The database schema, in SQLAlchemy Core. Alembic migrations create and upgrade it.

Owners are polymorphic (a user or a bot user), so ``owner_id`` has no foreign key; the
store keeps it consistent. Timestamps are stored as naive UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)

metadata = MetaData()

ID = String(40)

accounts = Table(
    "accounts",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(255), nullable=False),
    Column("created_at", DateTime(), nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id"), nullable=False),
    Column("email", String(320), nullable=False),
    Column("role", String(16), nullable=False),  # "admin" or "member"
    Column("active", Boolean(), nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Index("ix_users_account_email", "account_id", "email", unique=True),
)

bot_users = Table(
    "bot_users",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("active", Boolean(), nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Index("ix_bot_users_account_id", "account_id", "id"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id"), nullable=False),
    Column("owner_id", ID, nullable=False),
    Column("description", Text(), nullable=False),
    Column("metadata", Text(), nullable=False),
    Column("token_digest", String(64), nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Index("ix_api_keys_account_id", "account_id", "id"),
    Index("ix_api_keys_owner_id", "owner_id"),
)

credentials = Table(
    "credentials",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id"), nullable=False),
    Column("owner_id", ID, nullable=False),
    Column("description", Text(), nullable=False),
    Column("metadata", Text(), nullable=False),
    Column("acl", Text(), nullable=False),  # a JSON list of rule strings
    Column("token_digest", String(64), nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Index("ix_credentials_account_id", "account_id", "id"),
    Index("ix_credentials_owner_id", "owner_id"),
)

# SSH public keys (migration 0011): one credential per key across accounts, found by its
# SHA-256 fingerprint when an SSH client authenticates.
ssh_credentials = Table(
    "ssh_credentials",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id"), nullable=False),
    Column("owner_id", ID, nullable=False),
    Column("description", Text(), nullable=False),
    Column("metadata", Text(), nullable=False),
    Column("public_key", Text(), nullable=False),  # "<type> <base64>"
    Column("fingerprint", String(64), nullable=False),  # "SHA256:..." of the key blob
    Column("acl", Text(), nullable=False),  # a JSON list of rule strings
    Column("created_at", DateTime(), nullable=False),
    Index("ix_ssh_credentials_fingerprint", "fingerprint", unique=True),
    Index("ix_ssh_credentials_account_id", "account_id", "id"),
    Index("ix_ssh_credentials_owner_id", "owner_id"),
)

# Append-only: the store has no update or delete of it (and on PostgreSQL a trigger refuses them).
audit_events = Table(
    "audit_events",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id"), nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Column("actor_id", String(64), nullable=False),  # an API key id, or "cli:<user>"
    Column("actor_owner_id", String(40), nullable=False),
    Column("operation", String(16), nullable=False),
    Column("resource", String(32), nullable=False),
    Column("resource_id", String(40), nullable=False),
    Column("client_ip", String(64), nullable=False),
    Column("operation_id", String(40), nullable=False),
    Index("ix_audit_events_account_id", "account_id", "id"),
)

# Reserved names: unique across accounts, so that no account binds another's. Domains are
# stored lowercased; cname_target is null for names under --domain.
reserved_domains = Table(
    "reserved_domains",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id"), nullable=False),
    Column("owner_id", ID, nullable=False),
    Column("description", Text(), nullable=False),
    Column("metadata", Text(), nullable=False),
    Column("domain", String(253), nullable=False),
    Column("cname_target", String(253), nullable=True),
    Column("created_at", DateTime(), nullable=False),
    # ACME (migration 0010): ngrok's policy as given, the status the ACME worker writes, and
    # the /tls_certificates row of the certificate it issued.
    Column("certificate_management_policy", JSON(none_as_null=True), nullable=True),
    Column("certificate_management_status", JSON(none_as_null=True), nullable=True),
    Column("managed_certificate_id", ID, nullable=True),
    # An uploaded /tls_certificates row of the same account served for the domain (0012);
    # never set together with certificate_management_policy.
    Column("certificate_id", ID, nullable=True),
    Index("ix_reserved_domains_domain", "domain", unique=True),
    Index("ix_reserved_domains_account_id", "account_id", "id"),
    Index("ix_reserved_domains_certificate_id", "certificate_id"),
)

# Uploaded certificates: the chain as checked, its private key encrypted under the secret
# (bound to the leaf's fingerprint), so the database alone never holds a usable key.
tls_certificates = Table(
    "tls_certificates",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id"), nullable=False),
    Column("description", Text(), nullable=False),
    Column("metadata", Text(), nullable=False),
    Column("certificate_pem", Text(), nullable=False),
    Column("private_key_sealed", Text(), nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Index("ix_tls_certificates_account_id", "account_id", "id"),
)
reserved_addrs = Table(
    "reserved_addrs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id"), nullable=False),
    Column("owner_id", ID, nullable=False),
    Column("description", Text(), nullable=False),
    Column("metadata", Text(), nullable=False),
    Column("addr", String(300), nullable=False),  # host:port, as agents and the API show it
    Column("created_at", DateTime(), nullable=False),
    Index("ix_reserved_addrs_addr", "addr", unique=True),
    Index("ix_reserved_addrs_account_id", "account_id", "id"),
)

# The cluster's live state (store/cluster.py): nodes with their leases, the sessions and
# tunnels each holds, and the names bound. A node's rows go when its lease runs out.
cluster_nodes = Table(
    "cluster_nodes",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(255), nullable=False),
    Column("relay_addr", String(300), nullable=True),
    Column("started_at", DateTime(), nullable=False),
    Column("lease_expires_at", DateTime(), nullable=False),
)

cluster_sessions = Table(
    "cluster_sessions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("node_id", ID, nullable=False),
    Column("account_id", ID, nullable=False),
    Column("credential_id", ID, nullable=False),
    Column("owner_id", ID, nullable=False),
    Column("agent_version", String(255), nullable=False),
    Column("os", String(255), nullable=False),
    Column("user_agent", String(1024), nullable=False),
    Column("client_addr", String(300), nullable=False),
    Column("metadata", Text(), nullable=False),
    Column("started_at", DateTime(), nullable=False),
    Index("ix_cluster_sessions_account_id", "account_id", "id"),
    Index("ix_cluster_sessions_node_id", "node_id"),
)

cluster_tunnels = Table(
    "cluster_tunnels",
    metadata,
    Column("session_id", ID, primary_key=True),
    Column("id", String(64), primary_key=True),  # an agent may choose it: unique per session
    Column("node_id", ID, nullable=False),
    Column("account_id", ID, nullable=False),
    Column("proto", String(16), nullable=False),
    Column("url", String(300), nullable=False),
    Column("forwards_to", Text(), nullable=False),
    Column("metadata", Text(), nullable=False),
    Column("labels", Text(), nullable=False),  # JSON object
    Column("created_at", DateTime(), nullable=False),
    # What /endpoints shows (migration 0008).
    Column("endpoint_id", ID, nullable=False, server_default=""),
    Column("name", Text(), nullable=False, server_default=""),
    Column("description", Text(), nullable=False, server_default=""),
    Column("traffic_policy", Text(), nullable=False, server_default=""),
    Column("updated_at", DateTime(), nullable=True),
    Column("pooled", Boolean(), nullable=False, server_default=false()),  # migration 0009
    Index("ix_cluster_tunnels_account_id", "account_id"),
    Index("ix_cluster_tunnels_node_id", "node_id"),
)

# One row per bound name: the primary key is what makes a name one session's, cluster-wide.
# kind is "host" (http and https: one session holds a hostname across both schemes),
# "tls" (SNI name) or "tcp" (port, as text).
cluster_bindings = Table(
    "cluster_bindings",
    metadata,
    Column("kind", String(8), primary_key=True),
    Column("name", String(300), primary_key=True),
    Column("session_id", ID, nullable=False),
    Column("node_id", ID, nullable=False),
    # A pool's name (migration 0009): held by one member, shared by its account's pooled binds.
    Column("pooled", Boolean(), nullable=False, server_default=false()),
    Column("account_id", ID, nullable=False, server_default=""),
    Index("ix_cluster_bindings_session_id", "session_id"),
    Index("ix_cluster_bindings_node_id", "node_id"),
)

# Every session in a pool (its binding row names one of them, the holder).
cluster_pool_members = Table(
    "cluster_pool_members",
    metadata,
    Column("kind", String(8), primary_key=True),
    Column("name", String(300), primary_key=True),
    Column("session_id", ID, primary_key=True),
    Column("node_id", ID, nullable=False),
    Index("ix_cluster_pool_members_session_id", "session_id"),
    Index("ix_cluster_pool_members_node_id", "node_id"),
)

# What one node asks another to do (stop a session it holds); the owner polls for its rows.
cluster_commands = Table(
    "cluster_commands",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("node_id", ID, nullable=False),
    Column("action", String(32), nullable=False),
    Column("session_id", ID, nullable=False),
    Column("message", Text(), nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Index("ix_cluster_commands_node_id", "node_id"),
)

# What every node on one database must share, written once by the first node: the secret's
# keyed fingerprint ("secret_fingerprint") and the agent CA ("ca_cert", "ca_key_sealed",
# its private key encrypted under the secret). Never the secret itself.
cluster_identity = Table(
    "cluster_identity",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text(), nullable=False),
)

# ACME (migration 0010): one row per managed name, its certificate (the key sealed under the
# secret, bound to the name), the order lock a node holds while ordering, and the backoff.
acme_certificates = Table(
    "acme_certificates",
    metadata,
    Column("name", String(253), primary_key=True),
    Column("key_type", String(8), nullable=False),
    Column("certificate_pem", Text(), nullable=True),
    Column("private_key_sealed", Text(), nullable=True),
    Column("not_after", DateTime(), nullable=True),
    Column("renews_at", DateTime(), nullable=True),
    Column("issued_at", DateTime(), nullable=True),
    Column("failures", Integer(), nullable=False, server_default="0"),
    Column("job_started_at", DateTime(), nullable=True),
    Column("job_error_code", String(64), nullable=True),
    Column("job_msg", Text(), nullable=True),
    Column("job_retries_at", DateTime(), nullable=True),
    Column("locked_by", String(40), nullable=True),
    Column("locked_until", DateTime(), nullable=True),
)
# Challenges being validated: an HTTP-01 key authorization by (name, token), a TLS-ALPN-01
# certificate and sealed key by name; whichever node the CA reaches answers.
acme_challenges = Table(
    "acme_challenges",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("name", String(253), primary_key=True),
    Column("token", String(255), primary_key=True),
    Column("content", Text(), nullable=False),
    Column("created_at", DateTime(), nullable=False),
)
