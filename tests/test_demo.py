from portal.extensions import db
from portal.models import Branch, Business, Contact, Invoice, User, unscoped


def test_demo_data_loads_harbour_auto_once(app, runner):
    first = runner.invoke(args=["demo-data"])
    assert first.exit_code == 0 and "Loaded Harbour Auto" in first.output
    second = runner.invoke(args=["demo-data"])
    assert second.exit_code == 0 and "already present" in second.output
    assert db.session.scalar(db.select(db.func.count()).select_from(Business)) == 1
    branches = {b.name: b for b in db.session.scalars(db.select(Branch))}
    assert set(branches) == {"Sydney", "Parramatta", "Newcastle"}
    assert branches["Parramatta"].shares_with_head_office and branches["Sydney"].is_head_office
    assert {u.email for u in db.session.scalars(db.select(User))} == {
        "owner@harbour-auto.test", "support@portal.test"}
    visible = db.session.scalar(db.select(db.func.count()).select_from(Contact))
    everything = len(db.session.scalars(unscoped(Contact)).all())
    assert 0 < visible < everything  # some contacts are soft-deleted
    assert len(db.session.scalars(unscoped(Invoice)).all()) > db.session.scalar(
        db.select(db.func.count()).select_from(Invoice)) > 0


def test_demo_customer_can_sign_in_with_the_documented_password(app, runner, auth, client):
    runner.invoke(args=["demo-data"])
    assert auth.login("owner@harbour-auto.test", "demo-password").status_code == 302
    page = client.get("/").get_data(as_text=True)
    assert page.count('class="card"') == 3


def test_the_demo_starts_with_sydney_on_sage_synced_and_again_after_the_sandbox_restarts(
        app, runner, sandbox, app_settings, drain_jobs):
    from collections import Counter

    from portal import demo
    from portal.models import Connection, ConnectionState, Job, JobStatus
    from sage_sandbox.seed import hex_id

    app.config["SAGE_RATE_LIMIT_PER_MINUTE"] = 0
    sandbox.state.set_sage_rate_limit(None)
    demo.load(contacts_per_branch=30, invoices_per_branch=5)
    lead = hex_id("business", "Harbour Auto Pty Ltd")

    for _ in range(2):  # a second `make run` finds a fresh sandbox that holds nothing yet
        sandbox.state.reset()
        assert "Signed Sydney in" in demo.connect_sage_branch(sandbox.url)
        drain_jobs()
        db.session.expire_all()
        connection = db.session.scalar(db.select(Connection))
        assert connection.state == ConnectionState.CONNECTED and connection.sage_business_id == lead
        assert connection.token_issued_at is not None
        in_sage = Counter(c["reference"] for c in sandbox.state.businesses[lead].contacts.values())
        sydney = db.session.scalars(db.select(Contact).where(Contact.branch_id == connection.branch_id)).all()
        assert set(in_sage) == {c.reference for c in sydney} and max(in_sage.values()) == 1
        assert db.session.scalars(db.select(Job).order_by(Job.created_at.desc())).first().status == JobStatus.FINISHED
