"""Sage One AUS syncs at sign-in: the closest thing to a schedule that rule 8 allows.

A Sage One AUS sync needs the credentials owner's private key, which exists only while they are
signed in, so nothing can run while they are away. A customer can instead choose to have what is
waiting sent each time they sign in, with the key their sign-in has just opened. Support never
triggers it: a puppet session opens no key, and the setting is a Sage One AUS write, refused there.
"""
from __future__ import annotations

import logging

from portal import audit
from portal.extensions import db
from portal.integrations.sage_one_aus import sync
from portal.jobqueue import JobRefused
from portal.models import Connection, Contact, Invoice, InvoiceStatus, Provider, SyncState

log = logging.getLogger(__name__)


def set_sync_on_sign_in(connection: Connection, on: bool) -> None:
    """Switch the choice on or off for the branch (audited)."""
    if connection.sync_on_sign_in == on:
        return
    connection.sync_on_sign_in = on
    audit.record("sage_one_aus.sync_on_sign_in", f"{connection.branch.name}: what is waiting is "
                 + ("sent to Sage One AUS at each sign-in" if on else "no longer sent at sign-in"),
                 branch=connection.branch, details={"on": on})
    db.session.commit()


def _waiting(branch_id: int) -> bool:
    open_states = (SyncState.PENDING, SyncState.FAILED)
    for model, extra in ((Contact, ()), (Invoice, (Invoice.status == InvoiceStatus.ISSUED,))):
        if db.session.scalar(db.select(db.func.count()).select_from(model).where(
                model.branch_id == branch_id, model.deleted_at.is_(None), model.sync_state.in_(open_states),
                *extra)):
            return True
    return False


def sync_waiting(user, private_key: bytes | None) -> int:
    """At `user`'s sign-in: queue a sync of every branch they chose this for and that has something
    waiting; returns how many were queued. Never fails the sign-in."""
    if private_key is None or not user.is_customer:
        return 0
    connections = db.session.scalars(db.select(Connection).where(
        Connection.provider == Provider.SAGE_ONE_AUS, Connection.sync_on_sign_in.is_(True),
        Connection.credentials_owner_id == user.id)).all()
    queued = 0
    for connection in connections:
        if not connection.is_active or not _waiting(connection.branch_id):
            continue
        try:
            sync.enqueue_sync(connection.branch, user, private_key)
            queued += 1
        except (sync.SyncRefused, JobRefused) as refused:
            log.info("sign-in sync of branch %s not started: %s", connection.branch_id, refused)
    return queued
