"""The console's search rows follow every write to the searchable fields, and the overview counts
are reused for a few seconds with their age on the page."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import event, select

from portal.extensions import db
from portal.models import (
    Branch,
    ConnectionState,
    CustomerSearch,
    Provider,
    Role,
    SyncOutcome,
    customer_search,
    utcnow,
)
from portal.support import health, search
from tests import factories


def _names(query: str) -> set[str]:
    return {r.business.name for r in search.search(query).results}


def _rows() -> dict[int, tuple[str, str]]:
    return {r.business_id: (r.name, r.haystack) for r in db.session.scalars(select(CustomerSearch))}


@pytest.mark.postgres
def test_a_new_business_with_branches_users_and_connections_is_found_by_each(app):
    business = factories.business("Harbour Auto", branches=("Sydney", "Parramatta"))
    factories.customer(business, email="owner@harbour-auto.test")
    factories.connection(business.branches[0], sage_business_name="Harbour Holdings Pty Ltd")
    factories.connection(business.branches[1], Provider.SAGE_ONE_AUS, sage_one_company_name="Westside Wheels")
    for query in ("harbour auto", "PARRAMATTA", "owner@harbour", "holdings pty", "westside"):
        assert _names(query) == {"Harbour Auto"}, query


@pytest.mark.postgres
def test_renaming_anything_searchable_moves_the_match_to_the_new_text(app):
    business = factories.business("Harbour Auto", branches=("Sydney",))
    user = factories.customer(business, email="owner@harbour-auto.test")
    connection = factories.connection(business.branches[0], sage_business_name="Harbour Holdings")
    business.name = "Bayside Motors"
    business.branches[0].name = "Manly"
    user.email = "boss@bayside.test"
    connection.sage_business_name = "Bayside Group"
    db.session.commit()
    for old in ("harbour", "sydney", "owner@"):
        assert _names(old) == set(), old
    for new in ("bayside motors", "manly", "boss@bayside", "bayside group"):
        assert _names(new) == {"Bayside Motors"}, new


def test_a_user_or_branch_moving_business_is_searchable_only_under_the_new_one(app):
    first = factories.business("First Tyres", branches=("Alpha",))
    second = factories.business("Second Tyres", branches=("Beta",))
    user = factories.customer(first, email="mover@tyres.test")
    branch = first.branches[0]
    assert _names("mover@") == {"First Tyres"}
    user.business_id = second.id
    branch.business_id = second.id
    db.session.commit()
    assert _names("mover@") == {"Second Tyres"}
    assert _names("alpha") == {"Second Tyres"}


def test_support_users_and_disconnected_names_follow_the_same_rules_as_before(app):
    business = factories.business("Harbour Auto", branches=("Sydney",))
    user = factories.customer(business, email="owner@harbour-auto.test")
    factories.connection(business.branches[0], state=ConnectionState.DISCONNECTED, sage_business_name="Old Name Pty")
    assert _names("old name") == {"Harbour Auto"}  # a disconnected branch keeps its Sage name
    user.role = Role.SUPPORT
    db.session.commit()
    assert _names("owner@harbour") == set()  # only customers' emails are searched


def test_a_query_never_matches_across_two_names(app):
    factories.business("Harbour Auto", branches=("Sydney",))
    assert _names("auto") == {"Harbour Auto"}
    assert _names("auto\nsydney") == set()
    assert _names("auto sydney") == set()


def test_unrelated_writes_do_not_rewrite_search_rows(app):
    business = factories.business("Harbour Auto", branches=("Sydney",))
    connection = factories.connection(business.branches[0], sage_business_name="Harbour Holdings")
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        connection.state_reason = "Sage asked for a new sign-in"
        connection.login_failures = 2
        db.session.commit()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert not [s for s in statements if "customer_search" in s]


def test_rebuilding_after_bulk_inserts_gives_the_rows_the_flush_hook_keeps(app):
    for n in range(3):
        business = factories.business(f"Workshop {n}", branches=("Head office", f"Suburb {n}"))
        factories.customer(business)
        factories.connection(business.branches[1], sage_business_name=f"Workshop {n} Pty Ltd")
    kept = _rows()
    customer_search.rebuild_all(db.session.connection())
    db.session.commit()
    assert _rows() == kept and len(kept) == 3


@pytest.mark.postgres
def test_flags_in_search_results_agree_with_the_checks_on_a_loaded_connection(app):
    now = utcnow()
    conditions = {
        "healthy": {"last_successful_sync_at": now - timedelta(hours=1)},
        "needs_reauth": {"state": ConnectionState.NEEDS_REAUTH},
        "rejected": {"state": ConnectionState.CREDENTIALS_REJECTED, "provider": Provider.SAGE_ONE_AUS},
        "rate_limited": {"rate_limited_until": now + timedelta(minutes=5)},
        "limit_over": {"rate_limited_until": now - timedelta(minutes=5)},
        "failed": {"last_sync_outcome": SyncOutcome.FAILED},
        "resync": {"mass_resync_started_at": now - timedelta(minutes=10)},
        "stale": {"last_successful_sync_at": now - timedelta(hours=30)},
        "never_synced": {"connected_at": now - timedelta(hours=48)},
        "expiring": {"refresh_token_expires_at": now + timedelta(days=3)},
        "disconnected": {"state": ConnectionState.DISCONNECTED, "last_sync_outcome": SyncOutcome.FAILED},
    }
    for key, fields in conditions.items():
        business = factories.business(f"Flagged {key}", branches=("Main", "Unconnected"))
        factories.connection(business.branches[0], fields.pop("provider", Provider.SAGE), **fields)
    ctx = health.context(now=now)
    found = search.search("flagged", ctx=ctx).results
    assert len(found) == len(conditions)
    seen = set()
    for result in found:
        main, unconnected = result.branches
        loaded = db.session.get(Branch, db.session.scalar(
            select(Branch.id).where(Branch.business_id == result.business.id, Branch.name == "Main"))).connection
        assert main.flags == health.flags(loaded, ctx), result.business.name
        assert unconnected.connection is None and unconnected.flags == []
        seen.update(f.key for f in main.flags)
    assert seen == set(health.BY_KEY)  # every filter was exercised


# --- overview counts, reused for a few seconds ----------------------------------------------------

AS_OF = re.compile(r"Counts as of <time datetime=\"([^\"]+)\">\d{1,2}:\d\d [ap]m</time>")


def _needs_reauth_count(body: str) -> int:
    match = re.search(r'<strong class="health-number">(\d+)</strong>\s*<span>Needs re-authentication</span>', body)
    assert match, "no needs_reauth count on the page"
    return int(match.group(1))


def test_the_overview_counts_are_reused_for_a_few_seconds_and_show_their_age(app, client, auth, redis_client):
    app.config["SUPPORT_OVERVIEW_CACHE_SECONDS"] = 15
    business = factories.business("Bondi Brakes", branches=("Bondi", "Coogee"))
    factories.connection(business.branches[0], state=ConnectionState.NEEDS_REAUTH)
    auth.login(factories.support())

    first = client.get("/support/").get_data(as_text=True)
    assert _needs_reauth_count(first) == 1 and AS_OF.search(first)
    assert 0 < redis_client.ttl("support:health-overview:24") <= 15

    factories.connection(business.branches[1], state=ConnectionState.NEEDS_REAUTH)
    again = client.get("/support/").get_data(as_text=True)
    assert _needs_reauth_count(again) == 1  # the same counts, the same age
    assert AS_OF.search(again).group(1) == AS_OF.search(first).group(1)
    # Search results are never cached: the new branch's flag shows at once.
    results = client.get("/support/?health=needs_reauth", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert results.count('state-bad">Needs re-authentication') == 2

    redis_client.delete("support:health-overview:24")  # as when the few seconds are up
    assert _needs_reauth_count(client.get("/support/").get_data(as_text=True)) == 2


def test_each_staleness_threshold_has_its_own_counts(app, client, auth, redis_client):
    app.config["SUPPORT_OVERVIEW_CACHE_SECONDS"] = 15
    auth.login(factories.support())
    client.get("/support/")
    client.get("/support/?health=stale&stale_hours=48")
    assert redis_client.exists("support:health-overview:24", "support:health-overview:48") == 2


def test_without_reuse_the_overview_counts_are_always_fresh(app, client, auth, redis_client):
    business = factories.business("Bondi Brakes", branches=("Bondi", "Coogee"))
    factories.connection(business.branches[0], state=ConnectionState.NEEDS_REAUTH)
    auth.login(factories.support())
    assert _needs_reauth_count(client.get("/support/").get_data(as_text=True)) == 1
    factories.connection(business.branches[1], state=ConnectionState.NEEDS_REAUTH)
    assert _needs_reauth_count(client.get("/support/").get_data(as_text=True)) == 2
    assert not redis_client.keys("support:health-overview:*")


def test_each_branch_shows_its_health_badges_in_the_results_and_on_the_customer_page(app, client, auth):
    now = utcnow()
    business = factories.business("Bondi Brakes", branches=("Bondi", "Coogee", "Manly", "Randwick", "Maroubra"))
    bondi, coogee, manly, randwick, _maroubra = business.branches
    factories.connection(bondi, last_successful_sync_at=now - timedelta(hours=1))
    factories.connection(coogee, state=ConnectionState.NEEDS_REAUTH, last_sync_outcome=SyncOutcome.FAILED,
                         last_successful_sync_at=now - timedelta(hours=1))
    factories.connection(manly, rate_limited_until=now + timedelta(minutes=5),
                         last_successful_sync_at=now - timedelta(hours=1))
    factories.connection(randwick, state=ConnectionState.DISCONNECTED)
    auth.login(factories.support())

    def badges_by_branch(html: str) -> dict[str, list[str]]:
        rows = re.findall(r"<tr>\s*<td[^>]*>(\w+).*?</td>.*?<td[^>]*>(.*?)</td>\s*</tr>", html, re.S)
        return {name: re.findall(r'<span class="state ([\w-]+)">([^<]+)</span>', cell) for name, cell in rows}

    results = client.get("/support/?q=bondi+brakes", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert badges_by_branch(results) == {
        "Bondi": [("state-connected", "Healthy")],
        "Coogee": [("state-bad", "Needs re-authentication"), ("state-bad", "Last sync failed")],
        "Manly": [("state-warning", "Rate-limited now")],
        "Randwick": [("state-disconnected", "Disconnected")],
        "Maroubra": [("state-none", "Not connected")],
    }
    page = client.get(f"/support/customers/{business.id}").get_data(as_text=True)
    for name, expected in badges_by_branch(results).items():
        card = page[page.index(f">{name}</h3>"):]
        assert re.findall(r'<span class="state ([\w-]+)">([^<]+)</span>', card[:card.index("</p>")]) == expected, name


def test_a_query_spanning_two_names_matches_nothing_without_asking_the_database(app):
    factories.business("Harbour Auto", branches=("Sydney",))
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        page = search.search("auto\nsydney")
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert page.total == 0 and page.results == []
    assert not any("customer_search" in statement for statement in statements)
