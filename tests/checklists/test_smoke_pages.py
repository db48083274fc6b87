"""Checklist pages render for support."""
from portal.models import Provider
from tests import factories


def test_index_and_start_form_render_for_support(app, client, auth):
    business = factories.business(branches=("Sydney", "Newcastle"))
    factories.connection(business.branches[1], Provider.SAGE_ONE_AUS)
    auth.login(factories.support())
    assert client.get("/support/checklists/").status_code == 200
    response = client.get(f"/support/checklists/start?scenario=sage-one-aus-puppet-auth&business_id={business.id}")
    assert response.status_code == 200
    assert "Newcastle" in response.get_data(as_text=True)
