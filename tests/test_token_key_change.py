"""A stored Sage token sealed under an earlier encryption key marks the branch for
re-authentication, with the reason, instead of failing the page."""
import base64
from datetime import timedelta

from portal import create_app
from portal.extensions import db
from portal.integrations.sage import tokens
from portal.integrations.sage.client import TokenSet
from portal.models import Connection, ConnectionState, utcnow
from tests import factories


def _tokens_under_another_key(app_settings, connection_id: int) -> tuple[bytes, bytes]:
    old_key = base64.urlsafe_b64encode(b"an-encryption-key-since-replaced").decode()
    other = create_app(dict(app_settings, ENCRYPTION_KEY=old_key))
    with other.app_context():
        row = db.session.get(Connection, connection_id)
        tokens.store_tokens(row, TokenSet(access_token="old-access", refresh_token="old-refresh",
                                          expires_in=300, refresh_token_expires_in=31 * 86400))
        blobs = (row.access_token_enc, row.refresh_token_enc)
        db.session.rollback()
        return blobs


def test_a_token_sealed_under_a_changed_key_asks_for_a_new_sage_sign_in(app, app_settings, client, auth, sandbox):
    business = factories.business(branches=("Sydney",))
    branch = business.branches[0]
    customer = factories.customer(business)
    connection = factories.connection(branch, sage_business_id="biz-1", sage_business_name="Harbour Auto Pty")
    access, refresh = _tokens_under_another_key(app_settings, connection.id)
    connection.access_token_enc, connection.refresh_token_enc = access, refresh
    connection.token_issued_at = utcnow()
    connection.access_token_expires_at = utcnow() + timedelta(minutes=5)
    connection.refresh_token_expires_at = utcnow() + timedelta(days=31)
    db.session.commit()
    auth.login(customer)
    response = client.get(f"/integrations/sage/branches/{branch.id}/mapping")
    assert response.status_code < 500
    db.session.expire_all()
    row = db.session.get(Connection, connection.id)
    assert row.state == ConnectionState.NEEDS_REAUTH
    assert row.state_reason == tokens.UNREADABLE_REASON
    assert row.access_token_enc is None and row.refresh_token_enc is None
    page = client.get(f"/integrations/sage/branches/{branch.id}").get_data(as_text=True)
    assert "encryption key was changed" in page
