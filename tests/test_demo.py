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
