"""What the customer dashboard shows, gathered in a fixed number of queries however many branches.

Each card says in words a person reads in five seconds: which provider and as whom, a state that is
never "Connected" while something is wrong (`card_state`), the last sync of each kind, what waits or
failed and the most common reason, what runs now, and why an action can't be used right now.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter

from sqlalchemy import bindparam, or_
from sqlalchemy.orm import joinedload

from portal import tallies, timefmt
from portal.extensions import db
from portal.models import (
    AuditEvent,
    Branch,
    Connection,
    ConnectionState,
    Job,
    JobStatus,
    Provider,
    PuppetSession,
    SyncOutcome,
    SyncState,
    utcnow,
)
from portal.models.jobs import active_on, branch_params

SAGE_SYNCS = (("sage.sync_contacts", "Contacts"), ("sage.sync_invoices", "Invoices"))
SAGE_ONE_SYNCS = (("sage_one_aus.sync", "Customers and invoices"),)
SYNC_KINDS = tuple(kind for kind, _ in SAGE_SYNCS + SAGE_ONE_SYNCS)


@dataclass(frozen=True)
class CardState:
    """A branch's state as its card shows it: `tone` ok / warn / bad / idle, a label, and why."""

    tone: str
    label: str
    reason: str | None = None


def card_state(connection: Connection | None, last_failure: str | None = None,
               now: datetime | None = None) -> CardState:
    """The one wording of a branch's state. Green ("ok") only when nothing is wrong: a branch that
    must sign in again, is rate-limited, has no Sage business chosen or whose last sync failed is a
    warning with the reason; a Sage One AUS login locked by too many failed sign-ins is "bad"."""
    now = now or utcnow()
    if connection is None:
        return CardState("idle", "Not connected", "Connect Sage or Sage One AUS to start syncing.")
    if connection.state == ConnectionState.DISCONNECTED:
        return CardState("idle", "Disconnected",
                         "Its contacts, invoices and their ids are kept; connect again to sync.")
    if connection.state == ConnectionState.NEEDS_REAUTH:
        return CardState("warn", "Needs re-authentication", connection.state_reason or (
            f"{connection.provider.label} no longer accepts this branch's sign-in: sign in again to sync."))
    if connection.state == ConnectionState.CREDENTIALS_REJECTED:
        return CardState("warn", "Sage One login rejected", connection.state_reason or (
            "Sage One AUS refused the saved login: sign in again with the current password."))
    if connection.locked_until is not None and connection.locked_until > now:
        return CardState("bad", "Login locked", f"Sage One AUS locked this login after too many failed sign-ins; "
                                                f"it opens again {timefmt.ago(connection.locked_until, now)}.")
    if connection.is_rate_limited(now):
        return CardState("warn", "Rate-limited", f"{connection.provider.label} is limiting requests for this "
                         f"business; syncs wait and go on {timefmt.ago(connection.rate_limited_until, now)} "
                         f"(at {timefmt.clock(connection.rate_limited_until)}).")
    if connection.provider == Provider.SAGE and not connection.sage_business_id:
        return CardState("warn", "Choose the Sage business",
                         "Choose which Sage business this branch uses: nothing is synced until you pick one.")
    if connection.last_sync_outcome == SyncOutcome.FAILED:
        return CardState("warn", "Last sync failed", last_failure or connection.state_reason
                         or "The last sync stopped before the end; the rest waits for the next run.")
    return CardState("ok", "Connected")


@dataclass
class LastSync:
    """The latest ended sync of one kind (None: never ran)."""

    label: str
    job: Job | None

    @property
    def outcome(self) -> str | None:
        if self.job is None:
            return None
        if self.job.status == JobStatus.FAILED:
            return self.job.error or "Failed."
        return (self.job.result or {}).get("summary") or "Finished."


@dataclass
class BranchCard:
    branch: Branch
    connection: Connection | None
    state: CardState
    last_syncs: list[LastSync]
    active_jobs: list[Job]
    pending: int = 0
    failed: int = 0
    top_failure: tuple[str, int] | None = None  # the most common failure reason and how many have it
    blocked: dict[str, str] = field(default_factory=dict)  # sync kind → why its button is disabled

    @property
    def signed_in_as(self) -> tuple[str, str] | None:
        """As whom the branch is connected: ("Sage One login", username), for Sage ("Sage user", as Sage
        named them at connect) or, for a branch connected before that was read, ("Signed in by", the
        portal user who signed in); None when not connected."""
        c = self.connection
        if c is None or not c.is_active:
            return None
        if c.provider == Provider.SAGE_ONE_AUS:
            return ("Sage One login", c.sage_one_username) if c.sage_one_username else None
        if c.sage_user:
            return ("Sage user", c.sage_user)
        return ("Signed in by", c.connected_by.email) if c.connected_by else None


def branch_cards(business, branch_ids: list[int] | None = None) -> list[BranchCard]:
    """One card per branch (or per branch in `branch_ids`), in five queries however many branches."""
    # Each branch with its connection and the people it names, in one statement.
    query = (db.select(Branch).where(Branch.business_id == business.id).order_by(Branch.id)
             .options(joinedload(Branch.connection).joinedload(Connection.connected_by),
                      joinedload(Branch.connection).joinedload(Connection.credentials_owner)))
    if branch_ids is not None:
        query = query.where(Branch.id.in_(branch_ids))
    branches = db.session.scalars(query).all()
    ids = [b.id for b in branches]
    if not ids:
        return []
    last = _last_syncs(ids)
    active: dict[int, list[Job]] = {}
    for job in sorted(db.session.scalars(active_on(ids)), key=attrgetter("created_at")):
        active.setdefault(job.branch_id, []).append(job)
    open_rows = _open_rows(ids)
    cards = []
    for branch in branches:
        connection = branch.connection
        kinds = SAGE_ONE_SYNCS if connection and connection.provider == Provider.SAGE_ONE_AUS else SAGE_SYNCS
        last_syncs = [LastSync(label, last.get((branch.id, kind))) for kind, label in kinds]
        failed_jobs = [s.job for s in last_syncs if s.job is not None and s.job.status == JobStatus.FAILED]
        latest_failure = max(failed_jobs, key=lambda j: j.created_at).error if failed_jobs else None
        pending, failed, top_failure = open_rows.get(branch.id, (0, 0, None))
        if latest_failure is None and failed:
            # The run ended but records failed (a missing tax rate, a refused email): it did not stop
            # before the end, so say what did happen; the card names the most common reason below.
            noun = "record" if failed == 1 else "records"
            latest_failure = f"{failed} {noun} could not be sent: the most common reason is below."
        state = card_state(connection, latest_failure)
        jobs = active.get(branch.id, [])
        cards.append(BranchCard(
            branch, connection, state, last_syncs if connection else [], jobs, pending, failed,
            top_failure, _blocked(connection, state, jobs, kinds)))
    return cards


@functools.lru_cache(maxsize=16)
def _last_syncs_statement(branch_count: int):
    from portal.integrations.sage.pages import latest_ended_job_id

    return db.select(Job).where(or_(*(Job.id == latest_ended_job_id(bindparam(f"branch_{n}"), kind)
                                      for n in range(branch_count) for kind in SYNC_KINDS)))


def _last_syncs(ids: list[int]) -> dict[tuple[int, str], Job]:
    """The latest ended sync job of each kind per branch, in one statement that reads each from the
    newest end of its index (not every job the branch ever ran); built once per number of branches."""
    rows = db.session.scalars(_last_syncs_statement(len(ids)), branch_params(ids))
    return {(job.branch_id, job.kind): job for job in rows}


def _open_rows(ids: list[int]) -> dict[int, tuple[int, int, tuple[str, int] | None]]:
    """Per branch: contacts and issued invoices pending, failed, and the most common failure reason of
    both with how many have it, from the tallies the database keeps (two small statements however
    many records the branches hold)."""
    found: dict[int, tuple[int, int, tuple[str, int] | None]] = {}
    per_record = [tallies.state_counts(ids, record, categories) for record, categories in tallies.SHOWN]
    reasons = tallies.top_failures(ids)
    for branch_id in ids:
        pending = sum(counts[branch_id][SyncState.PENDING.value] for counts in per_record)
        failed = sum(counts[branch_id][SyncState.FAILED.value] for counts in per_record)
        top = reasons.get(branch_id)
        if pending or failed:
            found[branch_id] = (pending, failed,
                                (top[0] or "No reason was recorded.", top[1]) if top else None)
    return found


def _blocked(connection: Connection | None, state: CardState, jobs: list[Job], kinds) -> dict[str, str]:
    """Why each sync button of the card can't be used now (absent: it can)."""
    if connection is None or not connection.is_active:
        return {}
    running = {job.kind for job in jobs}
    blocked = {}
    for kind, _ in kinds:
        if kind in running:
            blocked[kind] = "it is running now; its progress is shown below."
        elif state.tone in ("warn", "bad") and state.label != "Last sync failed":
            blocked[kind] = state.reason  # the card's state says what it is; the button says why
    return blocked


class CardSyncRefused(Exception):
    """A sync asked for from a card could not start; the message says why (nothing was queued)."""


def start_sync(branch, kind: str, *, user, puppeteer, puppet_session, private_key: bytes | None) -> Job:
    """Queue the card's sync of `kind` through its provider's one enqueue path.

    Raises JobAlreadyRunning (a second click, another tab), CardSyncRefused (not connected, blocked,
    no customer key for Sage One AUS) and, in a puppet session, PuppetReadOnly for Sage One AUS.
    """
    from portal import puppet
    from portal.integrations.sage import enqueue as sage_jobs
    from portal.integrations.sage_one_aus import sync as sage_one
    from portal.jobqueue import JobAlreadyRunning, JobRefused

    try:
        if kind in dict(SAGE_SYNCS):
            return sage_jobs.start_sync(branch, kind.removeprefix("sage.sync_"), requested_by=user,
                                        puppeteer=puppeteer, puppet_session=puppet_session)
        if kind in dict(SAGE_ONE_SYNCS):
            if puppet_session is not None:
                raise puppet.PuppetReadOnly()
            return sage_one.enqueue_sync(branch, user, private_key, puppeteer=puppeteer)
    except JobAlreadyRunning:
        raise
    except (JobRefused, sage_one.SyncRefused) as refused:
        raise CardSyncRefused(str(refused)) from None
    raise CardSyncRefused("There is no such sync.")


# The two lists below are read at every view of the dashboard: their statements are built once.
@functools.cache
def _access_log_statement():
    return (
        db.select(PuppetSession)
        .where(PuppetSession.business_id == bindparam("business_id"))
        .order_by(PuppetSession.started_at.desc())
        .limit(bindparam("limit"))
        # Both people are named on each row: loaded with it, not one statement per person.
        .options(joinedload(PuppetSession.support_user), joinedload(PuppetSession.customer_user))
    )


@functools.cache
def _puppet_writes_statement():
    return (
        db.select(AuditEvent)
        .where(
            AuditEvent.business_id == bindparam("business_id"),
            AuditEvent.puppet_session_id.is_not(None),
            AuditEvent.kind.not_in(("puppet.started", "puppet.ended")),
        )
        .order_by(AuditEvent.occurred_at.desc())
        .limit(bindparam("limit"))
        .options(joinedload(AuditEvent.actor))
    )


def support_access_log(business_id: int, limit: int = 10) -> list[PuppetSession]:
    """The latest times support puppeted someone in this business: by whom, when and why."""
    return db.session.scalars(_access_log_statement(), {"business_id": business_id, "limit": limit}).all()


def puppet_writes(business_id: int, limit: int = 20) -> list[AuditEvent]:
    """Changes support made while puppeting this business's users."""
    return db.session.scalars(_puppet_writes_statement(), {"business_id": business_id, "limit": limit}).all()
