"""Soft delete, the unscoped query, the append-only audit log, the one-active-job index."""
import pytest
from sqlalchemy.exc import IntegrityError

from portal import audit
from portal.extensions import db
from portal.models import AuditEvent, AuditLogIsAppendOnly, Contact, Invoice, Job, unscoped
from tests import factories

pytestmark = pytest.mark.postgres


def test_normal_queries_hide_soft_deleted_rows(app):
    branch = factories.business().branches[0]
    kept, gone = factories.contacts(branch, 2)
    gone.soft_delete()
    db.session.commit()
    db.session.expire_all()
    assert db.session.scalars(db.select(Contact)).all() == [kept]
    assert db.session.scalar(db.select(db.func.count()).select_from(Contact)) == 1
    gone_id = gone.id
    db.session.expunge_all()  # a fresh session: nothing answered from the identity map
    assert db.session.get(Contact, gone_id) is None
    assert db.session.scalars(db.select(Contact).where(Contact.id == gone_id)).all() == []


def test_unscoped_query_includes_soft_deleted_rows(app):
    branch = factories.business().branches[0]
    contact = factories.contacts(branch, 1)[0]
    invoice = factories.invoice(branch, contact)
    invoice.soft_delete()
    db.session.commit()
    db.session.expire_all()
    assert db.session.scalars(db.select(Invoice)).all() == []
    found = db.session.scalars(unscoped(Invoice).where(Invoice.id == invoice.id)).one()
    assert found.is_deleted


@pytest.mark.parametrize("loader", ["lazy", "selectin", "joined"])
def test_relationship_loads_hide_soft_deleted_rows(app, loader):
    from sqlalchemy.orm import joinedload, selectinload

    branch = factories.business().branches[0]
    kept, gone = factories.contacts(branch, 2)
    visible = factories.invoice(branch, kept)
    orphan = factories.invoice(branch, gone)
    gone.soft_delete()
    db.session.commit()
    ids, kept_id = (visible.id, orphan.id), kept.id
    db.session.expunge_all()
    options = {"lazy": [], "selectin": [selectinload(Invoice.contact)], "joined": [joinedload(Invoice.contact)]}
    loaded = {i.id: i for i in db.session.scalars(
        db.select(Invoice).where(Invoice.id.in_(ids)).options(*options[loader])).unique()}
    assert loaded[ids[0]].contact is not None and loaded[ids[0]].contact.id == kept_id
    assert loaded[ids[1]].contact is None  # the soft-deleted contact stays hidden through the relationship
    assert [line.description for line in loaded[ids[0]].lines] == ["Service"]


def test_audit_events_cannot_be_changed_or_deleted(app):
    event = audit.record("test.event", "something happened")
    db.session.commit()
    event.summary = "rewritten"
    with pytest.raises(AuditLogIsAppendOnly):
        db.session.commit()
    db.session.rollback()
    db.session.delete(db.session.get(AuditEvent, event.id))
    with pytest.raises(AuditLogIsAppendOnly):
        db.session.commit()
    db.session.rollback()
    assert db.session.get(AuditEvent, event.id).summary == "something happened"


def test_database_refuses_two_active_jobs_of_a_kind_for_a_branch(app):
    branch = factories.business().branches[0]
    db.session.add(Job(id="a" * 32, kind="sage.sync_contacts", branch_id=branch.id, status="queued"))
    db.session.commit()
    db.session.add(Job(id="b" * 32, kind="sage.sync_contacts", branch_id=branch.id, status="running"))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()
    db.session.add(Job(id="c" * 32, kind="sage.sync_contacts", branch_id=branch.id, status="finished"))
    db.session.add(Job(id="d" * 32, kind="sage.sync_invoices", branch_id=branch.id, status="queued"))
    db.session.commit()


def test_migrations_describe_exactly_the_models(app, runner):
    result = runner.invoke(args=["db", "check"])
    assert result.exit_code == 0, result.output
