"""The Service status page: the /healthz report in words, for people (the JSON stays at /healthz)."""


def test_the_status_page_says_in_words_what_is_down(client):
    response = client.get("/status")
    assert response.status_code == 200 and response.mimetype == "text/html"
    body = response.get_data(as_text=True)
    assert "Part of the service is down" in body  # no worker runs in this test
    assert "Sync workers" in body and "0 running" in body and "Database" in body


def test_every_page_links_to_the_status_page_and_healthz_stays_json(client):
    assert 'href="/status">Service status</a>' in client.get("/login").get_data(as_text=True)
    assert client.get("/healthz").is_json


def test_the_favicon_is_linked_and_served(client):
    assert 'rel="icon" type="image/svg+xml" href="/static/favicon.svg"' in client.get("/login").get_data(as_text=True)
    assert client.get("/static/favicon.svg").mimetype == "image/svg+xml"


def test_a_bare_403_is_explained_in_the_portals_words(app):
    from werkzeug.exceptions import Forbidden

    from portal import web

    with app.test_request_context("/anywhere"):
        body, status = web._http_error(Forbidden())
    assert status == 403
    assert "do that here" in body and "open to your sign-in" in body
    assert "read-protected" not in body
