"""Connecting a branch to Sage (OAuth), choosing its Sage business, and disconnecting.

Rule 2: a sign-in is stored on the branch that started it and nowhere else — branch sharing never
hands a token to a sibling. The OAuth `state` is single-use, short-lived, kept in Redis and bound
to the login session and branch that asked for it, so a callback cannot be replayed, forged or
completed in someone else's session.
"""
from __future__ import annotations

import json
import secrets

from flask import current_app

from portal import audit, keys
from portal.extensions import db, get_redis
from portal.integrations.sage.client import OAuthClient, SageClient, SageError
from portal.integrations.sage.tokens import clear_tokens, refresh_token_of, store_tokens
from portal.models import (
    Branch,
    Connection,
    ConnectionState,
    Contact,
    Invoice,
    Provider,
    SyncState,
    utcnow,
)

STATE_TTL_SECONDS = 600
CALLBACK_PATH = "/integrations/sage/callback"
_STATE_PREFIX = "portal:sage:oauth-state:"

CALLBACK_ERRORS = {
    "access_denied": "You chose not to allow access in Sage, so nothing was connected.",
    "temporarily_unavailable": "Sage's sign-in is temporarily unavailable. Wait about ten minutes and try again.",
    "server_error": "Sage's sign-in had a problem on its side. Try again in a few minutes.",
}


class ConnectRefused(Exception):
    """The connection could not be made; the message is shown to the customer as is."""


class BusinessChoiceNeedsConfirmation(Exception):
    """Choosing this Sage business would clear the branch's Sage ids; ask the customer first."""


def redirect_uri() -> str:
    """The one fixed callback Sage redirects to (the branch travels in `state`)."""
    return current_app.config["PUBLIC_URL"].rstrip("/") + CALLBACK_PATH


def _oauth() -> OAuthClient:
    return OAuthClient.from_config(current_app.config)


def refuse_other_provider(branch: Branch) -> None:
    """A branch has one provider at a time: refuse while Sage One AUS is connected."""
    connection = branch.connection
    if connection is not None and connection.provider != Provider.SAGE and connection.is_active:
        raise ConnectRefused("This branch is connected to Sage One AUS. Disconnect it first to connect Sage instead.")


def start(user, branch: Branch, session_id: str) -> str:
    """Remember a fresh single-use state for this login and branch; return Sage's authorize URL."""
    refuse_other_provider(branch)
    state = secrets.token_urlsafe(32)
    record = {"user_id": user.id, "branch_id": branch.id, "sid": session_id}
    get_redis().set(_STATE_PREFIX + state, json.dumps(record), ex=STATE_TTL_SECONDS)
    return _oauth().authorize_url(redirect_uri(), state)


def _take_state(state: str | None) -> dict:
    if not state or len(state) > 200:
        raise ConnectRefused("This Sage sign-in did not come from the portal. Start again from the branch's page.")
    raw = get_redis().getdel(_STATE_PREFIX + state)  # single use: gone whatever happens next
    if raw is None:
        raise ConnectRefused("This Sage sign-in link has expired or was already used. "
                             "Start again from the branch's page.")
    return json.loads(raw)


def finish(user, session_id: str, *, state: str | None, code: str | None, error: str | None) -> Connection:
    """Complete the callback: check the state, exchange the code, store the tokens on that branch only.

    Returns the connection (its business chosen when the answer is unambiguous); raises ConnectRefused.
    """
    record = _take_state(state)
    if record["sid"] != session_id or record["user_id"] != user.id:
        raise ConnectRefused("This Sage sign-in was started from a different login session, so it was "
                             "refused. Start again from the branch's page.")
    branch = db.session.get(Branch, record["branch_id"])
    if branch is None or branch.business_id != user.business_id:
        raise ConnectRefused("That branch is not part of your business.")
    if error:
        raise ConnectRefused(CALLBACK_ERRORS.get(error, f"Sage did not connect the branch ({error})."))
    if not code:
        raise ConnectRefused("Sage sent no authorization code back. Start again from the branch's page.")
    refuse_other_provider(branch)
    try:
        tokens = _oauth().exchange_code(code, redirect_uri())
    except SageError as exc:
        raise ConnectRefused(f"Sage did not complete the sign-in: {exc} Start again from the branch's page.") from None

    connection = branch.connection or Connection(branch_id=branch.id, provider=Provider.SAGE)
    connection.provider = Provider.SAGE
    connection.state = ConnectionState.CONNECTED
    connection.state_reason = None
    connection.connected_by_id = user.id
    connection.connected_at = utcnow()
    connection.disconnected_at = None
    connection.rate_limited_until = None
    db.session.add(connection)
    db.session.flush()  # the token encryption context names the row id
    store_tokens(connection, tokens)
    previous_business = connection.sage_business_id
    connection.sage_business_id = connection.sage_business_name = None
    connection.sage_user = None  # read again once a business is chosen (it may be another Sage user)
    audit.record("sage.connected", f"Signed {branch.name} in to Sage", branch=branch,
                 details={"connection_id": connection.id})
    db.session.commit()

    businesses = list_businesses(connection)
    ids_business = connection.ids_sage_business_id
    if len(businesses) == 1 and ids_business in (None, businesses[0]["id"]):
        choose_business(connection, businesses[0]["id"], businesses, confirmed=True)
    elif previous_business and previous_business == ids_business and any(b["id"] == ids_business for b in businesses):
        # A reconnect of a branch that already had a business: keep it (the customer can change it).
        choose_business(connection, ids_business, businesses, confirmed=True)
    return connection


def list_businesses(connection: Connection) -> list[dict]:
    """The Sage businesses the connection's Sage user can open (id and name).

    A person waits on this (the callback, the business choice), so the client is impatient: it
    answers "Sage is busy" rather than waiting on a limit. /businesses belongs to no business yet,
    so the sign-in has a request budget of its own.
    """
    from portal.integrations.sage.ratelimit import BusinessRateLimit
    from portal.integrations.sage.tokens import TokenProvider

    config = current_app.config
    limit = BusinessRateLimit(config["REDIS_URL"], f"sign-in-{connection.id}",
                              int(config["SAGE_RATE_LIMIT_PER_MINUTE"] or 0), margin=float(config["SAGE_RATE_MARGIN"]),
                              max_wait=float(config["SAGE_PAGE_WAIT_SECONDS"]))
    client = SageClient(api_url=config["SAGE_API_URL"], business_id=None, limiter=limit,
                        token=TokenProvider(connection.id, before_refresh=limit),
                        timeout=float(config["HTTP_TIMEOUT_SECONDS"]), patient=False)
    try:
        items = client.businesses()
    except SageError as exc:
        raise ConnectRefused(f"Signed in, but Sage did not list your businesses: {exc}") from None
    return [{"id": b["id"], "name": b.get("name") or b.get("displayed_as") or b["id"]} for b in items]


def choose_business(connection: Connection, business_id: str, businesses: list[dict], *, confirmed: bool) -> int:
    """Use this Sage business for the branch; returns how many Sage ids were cleared.

    When the branch's Sage ids belong to another business they are no longer trusted: contacts
    and invoices go back to pending without a Sage id. Raises BusinessChoiceNeedsConfirmation
    unless `confirmed`, and ConnectRefused for a business the Sage user cannot open.
    """
    chosen = next((b for b in businesses if b["id"] == business_id), None)
    if chosen is None:
        raise ConnectRefused("That Sage business is not available to this Sage sign-in.")
    cleared = 0
    previous = connection.ids_sage_business_id
    if previous and previous != business_id:
        if not confirmed:
            raise BusinessChoiceNeedsConfirmation()
        cleared = untrust_sage_ids(connection.branch_id)
        audit.record("sage.ids_cleared",
                     f"Sage ids cleared ({cleared} records): the branch now uses another Sage business",
                     branch=connection.branch,
                     details={"count": cleared, "from_business": previous, "to_business": business_id})
    connection.sage_business_id = business_id
    connection.sage_business_name = chosen["name"]
    connection.ids_sage_business_id = business_id
    audit.record("sage.business_chosen", f"{connection.branch.name} uses the Sage business {chosen['name']}",
                 branch=connection.branch, details={"sage_business_id": business_id})
    db.session.commit()
    if not connection.sage_user:
        connection.sage_user = _signed_in_user(connection)
        db.session.commit()
    return cleared


def _signed_in_user(connection: Connection) -> str | None:
    """As whom the branch signed in to Sage ("Sam Lee <sam@…>"), asked once its business is known so
    the request is paced with the business's others; None when Sage can't say now (nothing else
    depends on it: it names the person on the card and the page)."""
    from portal.integrations.sage import sync

    try:
        user = sync.page_client_for(connection).get("/user")
    except SageError:
        return None
    if not isinstance(user, dict):
        return None
    name = str(user.get("displayed_as") or "").strip()
    email = str(user.get("email") or "").strip()
    found = f"{name} <{email}>" if name and email else name or email
    return found[:254] or None


def untrust_sage_ids(branch_id: int) -> int:
    """Clear the Sage ids of every contact and invoice of the branch (deleted ones too); back to pending."""
    values = {"sage_id": None, "sync_state": SyncState.PENDING, "sync_error": None, "synced_at": None}
    total = 0
    for model in (Contact, Invoice):
        result = db.session.execute(
            db.update(model).where(model.branch_id == branch_id, model.sage_id.is_not(None)).values(**values)
            .execution_options(synchronize_session=False)
        )
        total += result.rowcount or 0
    return total


def disconnect(connection: Connection) -> bool:
    """Revoke the refresh token at Sage, forget the tokens, keep the data; True if Sage confirmed."""
    revoked = True
    try:
        token = refresh_token_of(connection)
        if token:
            _oauth().revoke(token)
    except (SageError, keys.CiphertextRejected):
        revoked = False
    clear_tokens(connection)
    connection.state = ConnectionState.DISCONNECTED
    connection.state_reason = None if revoked else (
        "Sage did not confirm that it revoked the portal's access; the tokens were deleted here anyway.")
    connection.disconnected_at = utcnow()
    audit.record("sage.disconnected", f"Disconnected {connection.branch.name} from Sage", branch=connection.branch,
                 details={"revoked_at_sage": revoked, "sage_business_id": connection.sage_business_id})
    db.session.commit()
    return revoked

