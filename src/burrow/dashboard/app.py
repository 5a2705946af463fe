"""The web dashboard: server-rendered pages over Burrow's own REST API.

Every read and write goes through :class:`burrow.client.AsyncClient`, in process, with the
signed-in user's API key, so the dashboard shows and does exactly what the API allows that
key. The one thing the API does not say is the key's role, which only decides which
buttons to hide (the API still refuses what a member may not do): ``identify`` answers it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jinja2
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from burrow.client import AsyncClient, Error
from burrow.domain import acl, errors

from . import session as sessions
from .session import Session, SessionCodec

HERE = Path(__file__).parent
PREFIX = "/dashboard"
MAX_FORM_BYTES = 64 * 1024
# A refused form's values come back through the session cookie, which must stay under 4 KB.
MAX_DRAFT_JSON = 1200
error_log = logging.getLogger("burrow.error")
_INTERNAL_BASE = "http://burrow.internal"  # the in-process API's address; never leaves the process


@dataclass(frozen=True)
class DashboardSettings:
    """What the snippets shown with a new authtoken need to know about this server."""

    agent_addr: str | None = None  # HOST:PORT agents dial; None when the edge is off
    ca_path: str | None = None  # the CA agents must trust, when Burrow made it
    domain: str = "burrow.localhost"
    public_url: str | None = None  # --public-url: decides the Secure flag and the allowed Origin


@dataclass(frozen=True)
class Identity:
    owner_id: str
    is_admin: bool
    # The account's users' emails by id: the API names users only by id, and has no users endpoint.
    emails: Mapping[str, str] = field(default_factory=dict)

    def who(self, owner_id: str) -> str:
        """An owner as people know them: a user's email, else the id (bot users)."""
        return self.emails.get(owner_id, owner_id)


IdentityLookup = Callable[[str], Identity | None]


class View:
    """One signed-in request: its session, an API client acting with the user's key, the identity."""

    def __init__(self, request: Request, session: Session, client: AsyncClient, identity: Identity) -> None:
        self.request = request
        self.session = session
        self.client = client
        self.identity = identity

    def flash(self, kind: str, message: str, **extra: Any) -> None:
        self.session = replace(self.session, flash={"kind": kind, "message": message, **extra})

    def take_flash(self) -> dict[str, Any] | None:
        flash = self.session.flash
        self.session = replace(self.session, flash=None)
        return flash


Handler = Callable[[View], Awaitable[Response]]


PAGE_SIZE = 100  # the API's largest page
MAX_TRAIL = 50  # pages a "Previous" link can go back through; past that, to the first page
_CURSOR = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_FIRST = "~"  # the first page, in a trail


@dataclass(frozen=True)
class Pager:
    """Links to the pages around one page of a list: the API pages by ``before_id`` only, so
    a page's link carries the trail of the pages before it, for "Previous"."""

    path: str
    trail: tuple[str, ...]  # the before_id of each earlier page, oldest first ("~": the first)
    before_id: str | None
    next_before_id: str | None

    @classmethod
    def of(cls, request: Request, path: str) -> Pager:
        before = request.query_params.get("before_id", "")
        back = request.query_params.get("back", "")
        trail = tuple(t for t in back.split(",") if t == _FIRST or _CURSOR.match(t))[-MAX_TRAIL:]
        return cls(path, trail, before if _CURSOR.match(before) else None, None)

    def link(self, before_id: str | None, trail: tuple[str, ...]) -> str:
        query = {"before_id": before_id, "back": ",".join(trail[-MAX_TRAIL:])}
        shown = "&".join(f"{k}={v}" for k, v in query.items() if v)
        return f"{PREFIX}{self.path}" + (f"?{shown}" if shown else "")

    @property
    def next_url(self) -> str | None:
        if self.next_before_id is None:
            return None
        return self.link(self.next_before_id, (*self.trail, self.before_id or _FIRST))

    @property
    def previous_url(self) -> str | None:
        if self.before_id is None:
            return None
        if not self.trail:
            return self.link(None, ())
        previous = self.trail[-1]
        return self.link(None if previous == _FIRST else previous, self.trail[:-1])


async def _count(listing: Any) -> int:
    """How many items a list has: every page's, as the API has no count."""
    total = 0
    async for _ in listing:
        total += 1
    return total


def _api_message(error: Error) -> str:
    return f"{error.message} ({error.error_code})" if error.error_code else error.message


def create_dashboard(
    api: ASGIApp, server_secret: bytes, identify: IdentityLookup, settings: DashboardSettings
) -> Starlette:
    codec = SessionCodec(server_secret)
    # Autoescaping everywhere: every value shown comes from the API or the user.
    templates = Jinja2Templates(
        env=jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
    )

    def client_for(key: str, request: Request) -> AsyncClient:
        # The API limits and audits the browser's address (as resolved for this request,
        # behind a trusted proxy too), handed over as the in-process request's peer.
        peer = request.scope.get("client") or ("unknown", 0)
        transport = httpx.ASGITransport(app=api, client=(str(peer[0]), int(peer[1])))
        return AsyncClient(key, base_url=_INTERNAL_BASE, transport=transport, max_retries=0)

    def secure(request: Request) -> bool:
        return request.url.scheme == "https" or (settings.public_url or "").startswith("https:")

    def own_origins(request: Request) -> set[str]:
        origins = {f"{request.url.scheme}://{request.headers.get('host', '')}".lower()}
        if settings.public_url:
            public = urlsplit(settings.public_url)
            origins.add(f"{public.scheme}://{public.netloc}".lower())
        return origins

    def cookie(request: Request) -> tuple[str, str]:
        """The session cookie's name and path: over HTTPS a ``__Host-`` cookie (whose path
        must be /), which pages on other hosts of a shared parent domain cannot set."""
        return (sessions.SECURE_COOKIE_NAME, "/") if secure(request) else (sessions.COOKIE_NAME, PREFIX)

    def with_cookie(request: Request, response: Response, session: Session | None) -> Response:
        response.headers["Cache-Control"] = "no-store"
        name, path = cookie(request)
        if session is None:
            response.delete_cookie(name, path=path, secure=secure(request), httponly=True, samesite="strict")
        else:
            response.set_cookie(
                name,
                codec.seal(session),
                path=path,
                secure=secure(request),
                httponly=True,
                # Strict: no cross-site request ever carries the session, not even a top-level
                # link; a link from elsewhere lands on the sign-in page, which is acceptable.
                samesite="strict",
            )
        return response

    def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        response: Response = templates.TemplateResponse(
            request, name, {"prefix": PREFIX, **context}, status_code=status
        )
        return response

    def forbidden(request: Request, reason: str) -> Response:
        return problem_page("Refused", reason, 403)

    async def read_form(request: Request) -> FormData:
        length = request.headers.get("content-length")
        if length is None or not length.isdigit():
            raise HTTPException(411, "A form needs a Content-Length.")
        if int(length) > MAX_FORM_BYTES:
            raise HTTPException(413, f"Forms are limited to {MAX_FORM_BYTES // 1024} KiB.")
        return await request.form(max_files=0, max_fields=200)

    def current(request: Request) -> Session | None:
        return codec.open(request.cookies.get(cookie(request)[0]), sessions.now())

    def page(handler: Handler, post: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session = current(request)
            if session is None or session.key is None:
                if post:
                    return forbidden(request, "Your session has expired. Sign in again.")
                return with_cookie(request, RedirectResponse(f"{PREFIX}/signin", 303), None)
            if post:
                form = await read_form(request)
                if not sessions.same_origin(dict(request.headers), own_origins(request)):
                    return forbidden(request, "This form was not sent from this dashboard.")
                if not sessions.csrf_matches(session, form.get("csrf")):
                    return forbidden(request, "This form has expired or was not sent from this dashboard.")
                request.state.form = form
            identity = identify(session.key)
            if identity is None:
                fresh = Session.new(sessions.now())
                fresh = replace(fresh, flash={"kind": "error", "message": "Your API key no longer works."})
                return with_cookie(request, RedirectResponse(f"{PREFIX}/signin", 303), fresh)
            client = client_for(session.key, request)
            try:
                view = View(request, session.touched(sessions.now()), client, identity)
                response = await handler(view)
            finally:
                await client.aclose()
            return with_cookie(request, response, view.session)

        return endpoint

    def show(view: View, name: str, **context: Any) -> Response:
        return render(
            view.request,
            name,
            {"csrf": view.session.csrf, "identity": view.identity, "flash": view.take_flash(), **context},
        )

    def back(view: View, path: str) -> Response:
        return RedirectResponse(f"{PREFIX}{path}", 303)

    async def attempt(view: View, action: Awaitable[Any], done: str) -> bool:
        try:
            await action
        except Error as error:
            view.flash("error", _api_message(error))
            return False
        view.flash("success", done)
        return True

    def field(view: View, name: str) -> str:
        value = view.request.state.form.get(name, "")
        return value.strip() if isinstance(value, str) else ""

    def draft(view: View, *names: str) -> dict[str, str]:
        """The fields of a refused form to fill in again, those that fit in the cookie."""
        kept: dict[str, str] = {}
        room = MAX_DRAFT_JSON
        for name in names:
            value = field(view, name)
            if len(json.dumps(value)) <= room:
                kept[name] = value
                room -= len(json.dumps(value))
        return kept

    # Sign-in and out -----------------------------------------------------------------

    async def signin_page(request: Request) -> Response:
        session = current(request)
        if session is not None and session.key is not None:
            return RedirectResponse(f"{PREFIX}/", 303)
        session = session or Session.new(sessions.now())
        flash = session.flash
        session = replace(session, flash=None)
        response = render(request, "signin.html", {"csrf": session.csrf, "flash": flash})
        return with_cookie(request, response, session)

    async def signin(request: Request) -> Response:
        session = current(request)
        form = await read_form(request)
        # A refused sign-in sets no cookie: a cross-site POST carries none (SameSite=Strict),
        # and answering it with a fresh session would sign the victim out.
        if not sessions.same_origin(dict(request.headers), own_origins(request)):
            return forbidden(request, "This form was not sent from this dashboard.")
        if session is None or not sessions.csrf_matches(session, form.get("csrf")):
            return forbidden(request, "The sign-in form had expired or was not sent from this dashboard.")
        key = form.get("api_key")
        key = key.strip() if isinstance(key, str) else ""
        problem: str | None = None
        if not key:
            problem = "Enter an API key."
        else:
            client = client_for(key, request)
            try:
                await client.api_keys.list(limit=1)
            except Error as error:
                problem = _api_message(error)
            finally:
                await client.aclose()
        if problem is not None or identify(key) is None:
            response = render(
                request,
                "signin.html",
                {"csrf": session.csrf, "flash": {"kind": "error", "message": problem or "Invalid API key."}},
                status=401,
            )
            return with_cookie(request, response, session)
        # A new session (and CSRF token) at sign-in, so nothing from before carries over.
        return with_cookie(request, RedirectResponse(f"{PREFIX}/", 303), Session.new(sessions.now(), key))

    async def signout(view: View) -> Response:
        fresh = replace(Session.new(sessions.now()), flash={"kind": "success", "message": "Signed out."})
        view.session = fresh
        return RedirectResponse(f"{PREFIX}/signin", 303)

    # Pages ---------------------------------------------------------------------------

    async def overview(view: View) -> Response:
        c = view.client
        pages: list[Any] = await asyncio.gather(  # seven reads: past gather's typed overloads
            c.api_keys.list(limit=PAGE_SIZE),
            c.credentials.list(limit=PAGE_SIZE),
            c.bot_users.list(limit=PAGE_SIZE),
            c.tunnel_sessions.list(limit=PAGE_SIZE),
            c.tunnels.list(limit=PAGE_SIZE),
            c.reserved_domains.list(limit=PAGE_SIZE),
            c.reserved_addrs.list(limit=PAGE_SIZE),
        )
        totals = await asyncio.gather(*(_count(listing) for listing in pages))
        keys, credentials, bots = pages[0].items, pages[1].items, pages[2].items
        live, tunnels = pages[3].items, pages[4].items
        domains, addrs = pages[5].items, pages[6].items
        activity: list[tuple[Any, str, str]] = [
            *((k.created_at, "API key created", k.description or k.id) for k in keys),
            *((k.created_at, "Credential created", k.description or k.id) for k in credentials),
            *((b.created_at, "Bot user created", b.name) for b in bots),
            *((s.started_at, "Agent connected", f"{s.id} ({s.os or 'unknown OS'})") for s in live),
            *((d.created_at, "Domain reserved", d.domain) for d in domains),
            *((a.created_at, "TCP address reserved", a.addr) for a in addrs),
        ]
        activity.sort(key=lambda entry: entry[0], reverse=True)
        labels = ["API keys", "Credentials", "Bot users", "Agents online", "Tunnels"]
        labels += ["Reserved domains", "Reserved TCP addresses"]
        counts = dict(zip(labels, totals, strict=True))
        order = ["Agents online", "Tunnels", "Credentials", "API keys", "Bot users"]
        order += ["Reserved domains", "Reserved TCP addresses"]
        counts = {label: counts[label] for label in order}
        return show(view, "overview.html", counts=counts, activity=activity[:10], tunnels=tunnels)

    async def paged(view: View, service: str, path: str) -> tuple[list[Any], Pager]:
        """One page of a list, as the page's query asks, and the links to the pages around it."""
        pager = Pager.of(view.request, path)
        listing = await getattr(view.client, service).list(before_id=pager.before_id, limit=PAGE_SIZE)
        items = list(listing.items)
        following = items[-1].id if listing.next_page_uri and items else None
        return items, replace(pager, next_before_id=following)

    async def api_keys_page(view: View) -> Response:
        keys, pager = await paged(view, "api_keys", "/api-keys")
        bots = (
            [b async for b in await view.client.bot_users.list(limit=PAGE_SIZE)]
            if view.identity.is_admin
            else []
        )
        return show(view, "api_keys.html", keys=keys, bots=bots, pager=pager)

    async def api_key_create(view: View) -> Response:
        owner = field(view, "owner_id") or None
        try:
            key = await view.client.api_keys.create(description=field(view, "description"), owner_id=owner)
        except Error as error:
            view.flash("error", _api_message(error))
            return back(view, "/api-keys")
        view.flash("token", "API key created.", kind_of="api_key", id=key.id, token=key.token)
        return back(view, "/api-keys/created")

    async def api_key_delete(view: View) -> Response:
        key_id = view.request.path_params["id"]
        await attempt(view, view.client.api_keys.delete(key_id), f"API key {key_id} deleted.")
        return back(view, "/api-keys")

    async def credentials_page(view: View) -> Response:
        credentials, pager = await paged(view, "credentials", "/credentials")
        return show(view, "credentials.html", credentials=credentials, draft=view.session.flash, pager=pager)

    async def credential_create(view: View) -> Response:
        rules = _rules(field(view, "acl"))
        try:
            credential = await view.client.credentials.create(
                description=field(view, "description"), acl=rules
            )
        except Error as error:
            view.flash("error", _api_message(error), **draft(view, "description", "acl"))
            return back(view, "/credentials")
        view.flash(
            "token",
            "Credential created.",
            kind_of="credential",
            id=credential.id,
            token=credential.token,
            acl=list(credential.acl),
        )
        return back(view, "/credentials/created")

    async def credential_delete(view: View) -> Response:
        credential_id = view.request.path_params["id"]
        await attempt(
            view, view.client.credentials.delete(credential_id), f"Credential {credential_id} deleted."
        )
        return back(view, "/credentials")

    def created(kind_of: str, listing: str) -> Handler:
        async def handler(view: View) -> Response:
            flash = view.session.flash
            if flash is None or flash.get("kind") != "token" or flash.get("kind_of") != kind_of:
                view.flash("info", "A token is shown only once, right after it is created.")
                return back(view, listing)
            view.take_flash()
            host = urlsplit(f"//{view.request.headers.get('host', '')}").hostname or "127.0.0.1"
            snippets = _snippets(settings, host, str(flash["token"]), flash.get("acl") or [])
            return show(
                view,
                "created.html",
                created=flash,
                snippets=snippets,
                listing=listing,
                what="credential" if kind_of == "credential" else "API key",
            )

        return handler

    async def bot_users_page(view: View) -> Response:
        bots, pager = await paged(view, "bot_users", "/bot-users")
        return show(view, "bot_users.html", bots=bots, pager=pager)

    async def bot_user_create(view: View) -> Response:
        name = field(view, "name")
        await attempt(view, view.client.bot_users.create(name=name), f"Bot user {name!r} created.")
        return back(view, "/bot-users")

    def bot_user_set_active(active: bool) -> Handler:
        async def handler(view: View) -> Response:
            bot_id = view.request.path_params["id"]
            done = f"Bot user {bot_id} {'activated' if active else 'deactivated'}."
            await attempt(view, view.client.bot_users.update(bot_id, active=active), done)
            return back(view, "/bot-users")

        return handler

    async def bot_user_delete(view: View) -> Response:
        bot_id = view.request.path_params["id"]
        await attempt(view, view.client.bot_users.delete(bot_id), f"Bot user {bot_id} deleted.")
        return back(view, "/bot-users")

    # Edits: a form with the item's values; saving it is one PATCH.
    EDITABLE: dict[str, tuple[str, str, tuple[str, ...]]] = {
        # path: (client service, what it is, its fields)
        "/credentials": ("credentials", "credential", ("description", "metadata", "acl")),
        "/api-keys": ("api_keys", "API key", ("description", "metadata")),
        "/bot-users": ("bot_users", "bot user", ("name",)),
        "/reserved-domains": ("reserved_domains", "reserved domain", ("description", "metadata")),
        "/reserved-addrs": ("reserved_addrs", "reserved address", ("description", "metadata")),
    }

    def edit_page(path: str) -> Handler:
        service, what, names = EDITABLE[path]

        async def handler(view: View) -> Response:
            item = await getattr(view.client, service).get(view.request.path_params["id"])
            values = {name: "\n".join(item.acl) if name == "acl" else getattr(item, name) for name in names}
            return show(view, "edit.html", item=item, what=what, values=values, listing=path)

        return handler

    def edit_save(path: str) -> Handler:
        service, what, names = EDITABLE[path]

        async def handler(view: View) -> Response:
            item_id = view.request.path_params["id"]
            changes: dict[str, Any] = {name: field(view, name) for name in names}
            if "acl" in changes:
                changes["acl"] = _rules(changes["acl"])
            if await attempt(
                view,
                getattr(view.client, service).update(item_id, **changes),
                f"{what.capitalize()} {item_id} saved.",
            ):
                return back(view, path)
            return back(view, f"{path}/{item_id}/edit")

        return handler

    async def audit_page(view: View) -> Response:
        try:
            events, pager = await paged(view, "audit_events", "/audit")
        except Error as error:
            if error.http_status_code != 403:
                raise
            return forbidden(view.request, f"Only admins see the audit trail: {_api_message(error)}")
        return show(view, "audit.html", events=events, pager=pager)

    async def sessions_page(view: View) -> Response:
        live = (await view.client.tunnel_sessions.list()).items
        tunnels = (await view.client.tunnels.list()).items
        endpoints = (await view.client.endpoints.list()).items
        owners = {c.id: c.owner_id async for c in await view.client.credentials.list(limit=PAGE_SIZE)}
        # Each session's endpoints, then its labeled tunnels (which serve no endpoint).
        serving = {endpoint.tunnel.id for endpoint in endpoints}
        by_session: dict[str, list[Any]] = {}
        for endpoint in endpoints:
            by_session.setdefault(endpoint.tunnel_session.id, []).append(endpoint)
        labeled: dict[str, list[Any]] = {}
        for tunnel in tunnels:
            if tunnel.id not in serving:
                labeled.setdefault(tunnel.tunnel_session.id, []).append(tunnel)
        return show(view, "sessions.html", live=live, by_session=by_session, labeled=labeled, owners=owners)

    async def session_stop(view: View) -> Response:
        session_id = view.request.path_params["id"]
        await attempt(view, view.client.tunnel_sessions.stop(session_id), f"Session {session_id} stopped.")
        return back(view, "/sessions")

    async def reserved_domains_page(view: View) -> Response:
        domains = (await view.client.reserved_domains.list()).items
        return show(view, "reserved_domains.html", domains=domains, draft=view.session.flash)

    async def reserved_domain_create(view: View) -> Response:
        try:
            reserved = await view.client.reserved_domains.create(
                domain=field(view, "domain"),
                description=field(view, "description"),
                metadata=field(view, "metadata"),
            )
        except Error as error:
            view.flash("error", _api_message(error), **draft(view, "domain", "description", "metadata"))
        else:
            view.flash("success", f"Domain {reserved.domain} reserved ({reserved.id}).")
        return back(view, "/reserved-domains")

    async def reserved_domain_delete(view: View) -> Response:
        domain_id = view.request.path_params["id"]
        done = f"Reserved domain {domain_id} deleted."
        await attempt(view, view.client.reserved_domains.delete(domain_id), done)
        return back(view, "/reserved-domains")

    async def reserved_addrs_page(view: View) -> Response:
        addrs = (await view.client.reserved_addrs.list()).items
        return show(view, "reserved_addrs.html", addrs=addrs, draft=view.session.flash)

    async def reserved_addr_create(view: View) -> Response:
        try:
            reserved = await view.client.reserved_addrs.create(
                description=field(view, "description"), metadata=field(view, "metadata")
            )
        except Error as error:
            view.flash("error", _api_message(error), **draft(view, "description", "metadata"))
        else:
            view.flash("success", f"Address {reserved.addr} reserved ({reserved.id}).")
        return back(view, "/reserved-addrs")

    async def reserved_addr_delete(view: View) -> Response:
        addr_id = view.request.path_params["id"]
        done = f"Reserved address {addr_id} deleted."
        await attempt(view, view.client.reserved_addrs.delete(addr_id), done)
        return back(view, "/reserved-addrs")

    async def acl_check(request: Request) -> Response:
        """Validates ACL rules as the API does, for the credential form's inline check."""
        session = current(request)
        if session is None or session.key is None:
            return JSONResponse({"error": "not signed in"}, status_code=401)
        text = request.query_params.get("rules", "")
        if len(text) > acl.MAX_RULES * (acl.MAX_RULE_LENGTH + 1):
            return JSONResponse({"valid": False, "message": "too long"})
        try:
            rules = _rules(text)
            if len(rules) > acl.MAX_RULES:
                return JSONResponse({"valid": False, "message": f"more than {acl.MAX_RULES} rules"})
            acl.validate_rules(rules)
        except acl.InvalidRule as problem:
            error = errors.INVALID_ACL_RULE(rule=problem.rule)
            return JSONResponse({"valid": False, "message": f"{error.message} ({error.code})"})
        return JSONResponse({"valid": True, "message": ""})

    def problem_page(title: str, reason: str, status: int) -> Response:
        page = templates.get_template("forbidden.html").render(prefix=PREFIX, title=title, reason=reason)
        return HTMLResponse(page, status_code=status)

    async def http_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return problem_page("Not found", "There is no such page.", 404)
        return problem_page("Refused", str(exc.detail), exc.status_code)

    async def api_refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Error)  # the API refused a read a page needed
        return problem_page("The API refused", _api_message(exc), 502)

    async def unexpected(request: Request, exc: Exception) -> Response:
        error_log.exception("unhandled error in %s %s", request.method, request.url.path)
        return problem_page("Something went wrong", "An internal error occurred; it has been logged.", 500)

    routes = [
        Route("/", page(overview)),
        Route("/signin", signin_page, methods=["GET"]),
        Route("/signin", signin, methods=["POST"]),
        Route("/signout", page(signout, post=True), methods=["POST"]),
        Route("/api-keys", page(api_keys_page)),
        Route("/api-keys", page(api_key_create, post=True), methods=["POST"]),
        Route("/api-keys/created", page(created("api_key", "/api-keys"))),
        Route("/api-keys/{id}/delete", page(api_key_delete, post=True), methods=["POST"]),
        Route("/credentials", page(credentials_page)),
        Route("/credentials", page(credential_create, post=True), methods=["POST"]),
        Route("/credentials/created", page(created("credential", "/credentials"))),
        Route("/credentials/{id}/delete", page(credential_delete, post=True), methods=["POST"]),
        Route("/acl-check", acl_check),
        Route("/bot-users", page(bot_users_page)),
        Route("/bot-users", page(bot_user_create, post=True), methods=["POST"]),
        Route("/bot-users/{id}/activate", page(bot_user_set_active(True), post=True), methods=["POST"]),
        Route("/bot-users/{id}/deactivate", page(bot_user_set_active(False), post=True), methods=["POST"]),
        Route("/bot-users/{id}/delete", page(bot_user_delete, post=True), methods=["POST"]),
        *(
            route
            for path in EDITABLE
            for route in (
                Route(f"{path}/{{id}}/edit", page(edit_page(path))),
                Route(f"{path}/{{id}}/edit", page(edit_save(path), post=True), methods=["POST"]),
            )
        ),
        Route("/audit", page(audit_page)),
        Route("/sessions", page(sessions_page)),
        Route("/sessions/{id}/stop", page(session_stop, post=True), methods=["POST"]),
        Route("/reserved-domains", page(reserved_domains_page)),
        Route("/reserved-domains", page(reserved_domain_create, post=True), methods=["POST"]),
        Route("/reserved-domains/{id}/delete", page(reserved_domain_delete, post=True), methods=["POST"]),
        Route("/reserved-addrs", page(reserved_addrs_page)),
        Route("/reserved-addrs", page(reserved_addr_create, post=True), methods=["POST"]),
        Route("/reserved-addrs/{id}/delete", page(reserved_addr_delete, post=True), methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    handlers: dict[Any, Any] = {HTTPException: http_problem, Error: api_refused, Exception: unexpected}
    return Starlette(routes=routes, exception_handlers=handlers, middleware=[Middleware(SecurityHeaders)])


class SecurityHeaders:
    """Headers every dashboard response carries: no framing (clickjacking), no inline or foreign
    scripts, styles or form targets, no sniffing, no Referer sent elsewhere."""

    HEADERS = [
        (
            b"content-security-policy",
            b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
            b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        ),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
    ]

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _rules(text: str) -> list[str]:
    """ACL rules as typed in the form: one per line, or separated by commas."""
    return [rule.strip() for rule in re.split(r"[\n,]", text) if rule.strip()]


_SDK = """import asyncio
import ngrok

async def main():
    session = await (
        ngrok.SessionBuilder()
        .authtoken({token})
        .server_addr({agent_addr})
{ca_line}        .connect()
    )
    listener = await session.http_endpoint().domain({hostname}).listen_and_forward("http://127.0.0.1:3000")
    print(listener.url())
    await asyncio.Event().wait()

asyncio.run(main())
"""


def _hostname(settings: DashboardSettings, rules: list[str]) -> str:
    """A hostname the credential's ACL lets an agent bind, for the snippets."""
    for rule in rules:
        try:
            parsed = acl.parse_rule(rule)
        except acl.InvalidRule:
            continue
        if isinstance(parsed, acl.Domain):
            return parsed.name
        if isinstance(parsed, acl.WildcardDomain):
            return "app" + parsed.suffix
    return f"app.{settings.domain}"


def _snippets(settings: DashboardSettings, request_host: str, token: str, rules: list[str]) -> dict[str, str]:
    if settings.agent_addr is None:
        return {}
    host, _, port = settings.agent_addr.rpartition(":")
    # An agent cannot dial a wildcard address: it reaches us by the name it used for this page.
    agent_addr = f"{request_host}:{port}" if host in ("0.0.0.0", "::", "[::]") else settings.agent_addr
    hostname = _hostname(settings, rules)
    ca = settings.ca_path
    ca_line = f'        .ca_cert(bytearray(open({json.dumps(ca)}, "rb").read()))\n' if ca else ""
    yaml = f"authtoken: {token}\nserver_addr: {agent_addr}\n"
    if ca:
        yaml += f"root_cas: {ca}\n"
    yaml += "update_check: false\n"
    return {
        "python": _SDK.format(
            token=json.dumps(token),
            agent_addr=json.dumps(agent_addr),
            ca_line=ca_line,
            hostname=json.dumps(hostname),
        ),
        "yaml": yaml,
        "command": f"ngrok http -config burrow-agent.yml -hostname {hostname} 3000",
    }
