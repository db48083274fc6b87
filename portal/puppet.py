"""Puppet sessions: support staff seeing the portal as a customer, safely.

The session record of the support person's login carries the puppet session id; while it is live,
`current_user` is the customer and `g.real_user` the support person. Puppet sessions never hold the
customer's private key (portal.sessions.private_key returns None in them), and every write to a
Sage One AUS connection is refused by `refuse_sage_one_aus_writes`, registered once as a
before_request guard on that integration's blueprint.
"""
from __future__ import annotations

from datetime import timedelta

from flask import current_app, g, has_request_context
from flask_login import current_user
from werkzeug.exceptions import Forbidden

from portal import audit, sessions
from portal.extensions import db
from portal.models import Provider, PuppetSession, Role, User, utcnow

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class PuppetError(ValueError):
    """A puppet session cannot be started; the message says why, in plain words."""


class PuppetReadOnly(Forbidden):
    """A write refused because a puppet session is read-only for Sage One AUS."""

    description = (
        "Support can't change a Sage One AUS connection while puppeting: Sage One AUS uses the "
        "customer's own Sage login, which only the customer can unlock. Ask the customer to do "
        "this from their own login."
    )


def current_session() -> PuppetSession | None:
    """The live puppet session of this request, if any."""
    if has_request_context() and "puppet_session" not in g:
        # The session is resolved when flask-login loads the user, which is lazy: a guard that
        # runs before anything touched current_user must load it, or it would see no session.
        current_user.is_authenticated  # noqa: B018
    return g.get("puppet_session")


def current_puppeteer() -> User | None:
    """The support person behind this request when puppeting, else None."""
    session = current_session()
    return session.support_user if session is not None else None


def real_user() -> User | None:
    """The person actually signed in (the support person while puppeting)."""
    return g.get("real_user") or (current_user if current_user.is_authenticated else None)


def resolve(real: User, puppet_session_id: int | None) -> User:
    """The user a request acts as: the puppeted customer while the session is live, else `real`."""
    if not puppet_session_id:
        return real
    puppet_session = db.session.get(PuppetSession, puppet_session_id)
    if puppet_session is None or puppet_session.support_user_id != real.id:
        sessions.update(puppet_session_id=None)
        return real
    if not puppet_session.is_live():
        if puppet_session.ended_at is None:
            _close(puppet_session, "expired")
            db.session.commit()
        sessions.update(puppet_session_id=None)
        g.puppet_session_just_ended = puppet_session
        return real
    g.puppet_session = puppet_session
    return puppet_session.customer_user


def start(support_user: User, customer: User, reason: str, address: str | None) -> PuppetSession:
    """Open a puppet session for this login; raises PuppetError with the reason it can't."""
    reason = (reason or "").strip()
    if support_user.role != Role.SUPPORT:
        raise PuppetError("Only support staff can puppet a customer.")
    if customer.role != Role.CUSTOMER:
        raise PuppetError("Only customer accounts can be puppeted, never support staff.")
    if not reason:
        raise PuppetError("Give a reason (a ticket reference or a sentence) to puppet a customer.")
    if len(reason) > 500:
        raise PuppetError("Keep the reason under 500 characters.")
    minutes = current_app.config["PUPPET_SESSION_MINUTES"]
    now = utcnow()
    puppet_session = PuppetSession(
        support_user_id=support_user.id,
        customer_user_id=customer.id,
        business_id=customer.business_id,
        reason=reason,
        address=address,
        started_at=now,
        expires_at=now + timedelta(minutes=minutes),
    )
    db.session.add(puppet_session)
    db.session.flush()
    audit.record(
        "puppet.started",
        f"{support_user.email} started puppeting {customer.email}: {reason}",
        business_id=customer.business_id,
        actor_id=support_user.id,
        subject_user_id=customer.id,
        puppet_session_id=puppet_session.id,
        details={"reason": reason, "expires_at": puppet_session.expires_at.isoformat()},
    )
    db.session.commit()
    sessions.update(puppet_session_id=puppet_session.id)
    return puppet_session


def _close(puppet_session: PuppetSession, how: str, by: User | None = None) -> None:
    puppet_session.ended_at = utcnow()
    puppet_session.end_reason = how
    audit.record(
        "puppet.ended",
        f"{(by or puppet_session.support_user).email} ended {puppet_session.support_user.email}'s "
        f"puppet session as {puppet_session.customer_user.email} ({how})" if by is not None else
        f"{puppet_session.support_user.email} stopped puppeting "
        f"{puppet_session.customer_user.email} ({how})",
        business_id=puppet_session.business_id,
        actor_id=(by or puppet_session.support_user).id,
        subject_user_id=puppet_session.customer_user_id,
        puppet_session_id=puppet_session.id,
        details={"how": how},
    )


def end(how: str = "ended by support") -> PuppetSession | None:
    """End this login's puppet session, if any, and go back to the support person."""
    puppet_session = current_session()
    if puppet_session is None:
        return None
    _close(puppet_session, how)
    db.session.commit()
    sessions.update(puppet_session_id=None)
    g.pop("puppet_session", None)
    return puppet_session


def may_end(puppet_session: PuppetSession, by: User | None) -> bool:
    """Whether `by` may end this session from the sessions page: their own, or anyone's for a lead."""
    return by is not None and by.is_support and (by.id == puppet_session.support_user_id or by.is_support_lead)


def end_session(puppet_session_id: int, by: User) -> PuppetSession:
    """End a live puppet session from the sessions page (for example one left open in another
    browser); raises PuppetError when it has ended already or `by` may not end it."""
    puppet_session = db.session.get(PuppetSession, puppet_session_id)
    if puppet_session is None or not puppet_session.is_live():
        raise PuppetError("That puppet session has already ended.")
    if not may_end(puppet_session, by):
        raise PuppetError("Only the support person who started a puppet session, or a support lead, can end it.")
    own = by.id == puppet_session.support_user_id
    _close(puppet_session, "ended from the sessions page" if own else "ended by a support lead",
           by=None if own else by)
    db.session.commit()
    return puppet_session


def puppet_read_only(provider) -> str | None:
    """Why an action on `provider` is disabled in this request (a sentence), or None if allowed.

    Templates call it (a Jinja global) to show Sage One AUS actions disabled with the reason;
    the server-side refusal is `refuse_sage_one_aus_writes`, whatever the page shows.
    """
    if current_session() is None:
        return None
    if getattr(provider, "value", provider) == Provider.SAGE_ONE_AUS.value:
        return PuppetReadOnly.description
    return None


def _target_business_id(puppet_session: PuppetSession) -> int:
    """The business the thing a request acts on belongs to: the branch's, the checklist run's, the
    job's or the named business's (when it exists: an audit row may only name a real business);
    else (the account itself) the puppeted customer's."""
    from flask import request

    from portal.ids import parse_id
    from portal.models import Branch, Business, ChecklistRun, Job

    args = request.view_args or {}
    if args.get("branch_id") is not None:
        found = db.session.scalar(db.select(Branch.business_id).where(Branch.id == args["branch_id"]))
    elif args.get("run_id") is not None:
        found = db.session.scalar(db.select(ChecklistRun.business_id).where(ChecklistRun.id == args["run_id"]))
    elif args.get("job_id") is not None:
        found = db.session.scalar(db.select(Branch.business_id).join(Job, Job.branch_id == Branch.id)
                                  .where(Job.id == str(args["job_id"])))
    else:
        named = args.get("business_id")
        if named is None and request.endpoint == "checklists.start":
            named = parse_id(request.form.get("business_id"))
        found = db.session.scalar(db.select(Business.id).where(Business.id == named)) if named is not None else None
    return found or puppet_session.business_id


def _note_flashes() -> None:
    from flask import session

    g.flashes_before = len(session.get("_flashes", []))


def _refused(response) -> bool:
    """A request refused by a view: an error status, or an error message flashed on the way."""
    from flask import session

    if response.status_code >= 400:
        return True
    new = session.get("_flashes", [])[g.get("flashes_before", 0):]
    return any(category == "error" for category, _ in new)


def record_puppet_write(response):
    """after_request hook: audit every unsafe request inside a puppet session, as a write when it
    succeeded and as a refusal when it did not.

    Registered once on the app (init_app), so no view can forget it: the event carries the support
    person (actor), the customer (subject), the session, the time, the address and the business the
    thing acted on belongs to.
    """
    from flask import request

    puppet_session = current_session()
    if puppet_session is None or request.method in SAFE_METHODS or g.get("puppet_refusal_recorded"):
        return response
    refused = _refused(response)
    view_args = request.view_args or {}
    verb = "refused" if refused else "did"
    audit.record(
        "puppet.write_refused" if refused else "puppet.write",
        f"{puppet_session.support_user.email}, puppeting {puppet_session.customer_user.email}: "
        f"{verb} {request.method} {request.path} ({response.status_code})",
        business_id=_target_business_id(puppet_session),
        details={
            "method": request.method,
            "path": request.path,
            "endpoint": request.endpoint,
            "status": response.status_code,
            "branch_id": view_args.get("branch_id"),
            "puppet_session_id": puppet_session.id,
            # Field names only: values may be secrets (passwords) or personal data.
            "fields": sorted(k for k in request.form.keys() if k != "csrf_token")[:50],
        },
    )
    db.session.commit()
    return response


def init_app(app) -> None:
    """Register the puppet-write audit hook and the `puppet_read_only` template helper."""
    app.before_request(_note_flashes)
    app.after_request(record_puppet_write)
    app.add_template_global(puppet_read_only, "puppet_read_only")
    app.add_template_global(may_end, "may_end_puppet_session")


def refuse_sage_one_aus_writes() -> None:
    """before_request guard: no unsafe request reaches a Sage One AUS action while puppeting."""
    from flask import request

    if request.method not in SAFE_METHODS and current_session() is not None:
        audit.record(
            "puppet.write_refused",
            f"Refused {request.method} {request.path}: Sage One AUS is read-only while puppeting",
            business_id=current_session().business_id,
            details={"path": request.path, "method": request.method},
        )
        db.session.commit()
        g.puppet_refusal_recorded = True
        raise PuppetReadOnly()
