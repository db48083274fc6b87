"""Search and health filters return the right customers on seeded data, in a fixed number of queries."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event

from portal.extensions import db
from portal.models import ConnectionState, Provider, SyncOutcome, utcnow
from portal.support import health, search
from tests import factories

NOW = utcnow()


@pytest.fixture
def seeded(app):
    """One business per health condition, plus a healthy one and a disconnected one."""
    def make(name, branch, provider=Provider.SAGE, email=None, **conn):
        business = factories.business(name, branches=(branch,))
        factories.customer(business, email=email)
        if conn is not None:
            conn.setdefault("last_successful_sync_at", NOW - timedelta(hours=1))
            factories.connection(business.branches[0], provider, **conn)
        return business

    return {
        "healthy": make("Harbour Auto", "Sydney", email="owner@harbour-auto.test",
                        sage_business_name="Harbour Auto Pty Ltd",
                        refresh_token_expires_at=NOW + timedelta(days=20)),
        "needs_reauth": make("Bondi Brakes", "Bondi", state=ConnectionState.NEEDS_REAUTH),
        "credentials_rejected": make("Newcastle Tyres", "Hamilton", Provider.SAGE_ONE_AUS,
                                     state=ConnectionState.CREDENTIALS_REJECTED,
                                     sage_one_company_name="Novocastrian Wheels"),
        "rate_limited": make("Perth Panels", "Osborne Park", rate_limited_until=NOW + timedelta(minutes=5)),
        "rate_limit_over": make("Hobart Hoses", "Sandy Bay", rate_limited_until=NOW - timedelta(minutes=5)),
        "sync_failed": make("Darwin Diesel", "Winnellie", last_sync_outcome=SyncOutcome.FAILED),
        "mass_resync": make("Cairns Clutches", "Portsmith", mass_resync_started_at=NOW - timedelta(minutes=10)),
        "stale": make("Geelong Gears", "Corio", last_successful_sync_at=NOW - timedelta(hours=30)),
        "never_synced_old": make("Ballarat Bearings", "Wendouree", last_successful_sync_at=None,
                                 connected_at=NOW - timedelta(hours=48)),
        "never_synced_new": make("Bendigo Bodyworks", "Epsom", last_successful_sync_at=None),
        "refresh_expiring": make("Albury Axles", "Lavington", refresh_token_expires_at=NOW + timedelta(days=3)),
        "disconnected": make("Mildura Mufflers", "Irymple", state=ConnectionState.DISCONNECTED,
                             last_sync_outcome=SyncOutcome.FAILED, last_successful_sync_at=NOW - timedelta(days=60)),
        "not_connected": _not_connected(),
    }


def _not_connected():
    business = factories.business("Wagga Wipers", branches=("Kooringal",))
    factories.customer(business)
    return business


def _names(page):
    return {r.business.name for r in page.results}


@pytest.mark.postgres
@pytest.mark.parametrize("key,expected", [
    ("needs_reauth", {"Bondi Brakes"}),
    ("credentials_rejected", {"Newcastle Tyres"}),
    ("rate_limited", {"Perth Panels"}),
    ("sync_failed", {"Darwin Diesel"}),
    ("mass_resync", {"Cairns Clutches"}),
    ("stale", {"Geelong Gears", "Ballarat Bearings"}),
    ("refresh_expiring", {"Albury Axles"}),
])
def test_each_health_filter_finds_exactly_its_customers(seeded, key, expected):
    ctx = health.context(now=NOW)
    assert _names(search.search(health_key=key, ctx=ctx)) == expected
    counts = {c.filter.key: c.branches for c in health.overview(ctx)}
    assert counts[key] == len(expected)


@pytest.mark.postgres
def test_stale_threshold_is_a_parameter(seeded):
    def stale(hours):
        return _names(search.search(health_key="stale", ctx=health.context(hours, now=NOW)))

    assert stale(72) == set()
    assert stale(40) == {"Ballarat Bearings"}
    assert stale(24) == {"Ballarat Bearings", "Geelong Gears"}


def test_flags_on_a_loaded_connection_agree_with_the_sql_filters(seeded):
    ctx = health.context(now=NOW)
    for f in health.FILTERS:
        by_sql = _names(search.search(health_key=f.key, ctx=ctx))
        by_flags = {r.business.name for r in search.search(ctx=ctx).results
                    if any(f in b.flags for b in r.branches)}
        # All 13 businesses fit on one page.
        assert by_sql == by_flags, f.key


@pytest.mark.postgres
@pytest.mark.parametrize("query,expected", [
    ("harbour", {"Harbour Auto"}),                      # business name, any case
    ("Osborne", {"Perth Panels"}),                      # branch name
    ("owner@harbour", {"Harbour Auto"}),                # user email
    ("Pty Ltd", {"Harbour Auto"}),                      # Sage business name
    ("novocastrian", {"Newcastle Tyres"}),              # Sage One AUS company name
    ("%", set()),                                       # wildcards are literal
    ("zzz-nothing", set()),
])
def test_search_matches_names_branches_emails_and_sage_names(seeded, query, expected):
    assert _names(search.search(query, ctx=health.context(now=NOW))) == expected


def test_search_combines_text_and_health_filter(seeded):
    ctx = health.context(now=NOW)
    assert _names(search.search("Brakes", "needs_reauth", ctx=ctx)) == {"Bondi Brakes"}
    assert _names(search.search("Harbour", "needs_reauth", ctx=ctx)) == set()


def test_search_is_paginated(app):
    for n in range(search.PER_PAGE + 5):
        factories.business(f"Paged Motors {n:02d}")
    first = search.search("paged motors")
    second = search.search("paged motors", page=2)
    assert first.total == search.PER_PAGE + 5 and first.pages == 2 and first.has_next
    assert len(second.results) == 5 and not second.has_next
    assert not _names(first) & _names(second)


def _count_queries(fn):
    statements = []

    def before(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", before)
    try:
        fn()
    finally:
        event.remove(db.engine, "before_cursor_execute", before)
    return len(statements)


def _grow(n):
    for i in range(n):
        business = factories.business(f"Grown {i}", branches=("A", "B"))
        factories.customer(business)
        factories.connection(business.branches[0], state=ConnectionState.NEEDS_REAUTH)


def test_console_pages_use_a_fixed_number_of_queries(seeded, client, auth):
    auth.login(factories.support())
    business_id = seeded["healthy"].id
    pages = ["/support/", "/support/?q=a", f"/support/customers/{business_id}", "/support/?health=needs_reauth"]

    def counts():
        return [_count_queries(lambda p=p: client.get(p)) for p in pages]

    before = counts()
    _grow(30)
    assert counts() == before


def test_live_search_answers_with_the_results_fragment_only(seeded, client, auth):
    auth.login(factories.support())
    response = client.get("/support/?q=bondi", headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Bondi Brakes" in body and "Needs re-authentication" in body
    assert "<html" not in body and "Health overview" not in body
    assert "HX-Request" in response.headers.get("Vary", "")


def test_the_console_page_shows_the_overview_search_and_results(seeded, client, auth):
    auth.login(factories.support())
    body = client.get("/support/?q=perth").get_data(as_text=True)
    assert "Health overview" in body and 'hx-trigger="input changed delay:300ms, search"' in body
    assert 'aria-live="polite"' in body and "Perth Panels" in body and "Rate-limited now" in body
    assert "Bondi Brakes" not in body


def test_an_empty_search_says_what_to_try(seeded, client, auth):
    auth.login(factories.support())
    body = client.get("/support/?q=zzz-nothing", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "No customers match" in body and "user's email" in body


def test_a_very_broad_search_is_capped_and_asks_for_more_letters(app, client, auth, monkeypatch):
    monkeypatch.setattr(search, "MAX_MATCHES", 3)
    for n in range(5):
        factories.business(f"Broad Motors {n}")
    found = search.search("broad")
    assert found.capped and found.total == 3 and len(found.results) == 3
    auth.login(factories.support())
    body = client.get("/support/?q=broad", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "More than 3 customers" in body and "keep typing" in body


def test_a_stale_threshold_that_is_not_1_to_2160_hours_is_refused_with_a_message(client, auth):
    auth.login(factories.support())
    for value in ("-5", "0", "99999", "x"):
        body = client.get(f"/support/?health=stale&stale_hours={value}").get_data(as_text=True)
        assert "Give the stale threshold as a whole number of hours from 1 to 2160" in body, value
        assert 'aria-invalid="true" aria-describedby="stale-hours-error"' in body
        assert "The default of 24 hours is used." in body
    body = client.get("/support/?health=stale&stale_hours=48").get_data(as_text=True)
    assert "Give the stale threshold" not in body and 'value="48"' in body
