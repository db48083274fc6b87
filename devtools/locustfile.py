"""The users of `make bench-load` (devtools/bench_load.py starts Locust on this file; not a test).

Customers open the dashboard, the Sage branch page, the Sage One AUS branch page and the
job-progress partial; support opens the console search, the overview and a customer page;
visitors open the login page (the baseline). Everyone waits between pages like a person does.

bench_load.py hands over the plan (the signed-in cookies, the pages and where to write the
timings) in BENCH_LOAD_PLAN, a JSON file. Every request's time is kept here at full precision
(Locust's own tables round them) and written out when Locust quits; what came before the last
user started is dropped, as `--reset-stats` drops it from Locust's tables.
"""
from __future__ import annotations

import json
import os
import random

from locust import HttpUser, between, events, task
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

PLAN = json.loads(open(os.environ["BENCH_LOAD_PLAN"]).read()) if os.environ.get("BENCH_LOAD_PLAN") else {}
WAIT = PLAN.get("wait_seconds", (1.0, 3.0))
TIMINGS: dict[str, list[float]] = {}
ERRORS: dict[str, int] = {}
FIRST_ERROR: dict[str, str] = {}


@events.request.add_listener
def _keep(name, response_time, exception, **_):
    TIMINGS.setdefault(name, []).append(response_time)
    if exception is not None:
        ERRORS[name] = ERRORS.get(name, 0) + 1
        FIRST_ERROR.setdefault(name, str(exception)[:300])


@events.spawning_complete.add_listener
def _forget_the_ramp(**_):
    TIMINGS.clear()
    ERRORS.clear()
    FIRST_ERROR.clear()


@events.quitting.add_listener
def _write(**_):
    if PLAN.get("out"):
        with open(PLAN["out"], "w") as out:
            json.dump({"timings": TIMINGS, "errors": ERRORS, "first_error": FIRST_ERROR}, out)


class _PortalUser(HttpUser):
    abstract = True
    wait_time = between(*WAIT)
    audience = ""

    def on_start(self):
        self.client.cookies.update(PLAN.get(f"{self.audience}_cookies", {}))
        # A browser sends a GET again, once, when the server closed the kept-alive connection just
        # as the request went out (gunicorn closes idle ones after 2 s; users wait 1-3 s): so do we.
        # A response that came is never sent again, and a server error shows in gunicorn's log.
        self.client.mount("http://", HTTPAdapter(max_retries=Retry(
            total=1, connect=1, read=1, status=0, other=0, allowed_methods=["GET"], raise_on_status=False)))

    def _open(self, label: str, path: str, headers: dict | None = None):
        """GET a page as `label`; anything but a 200 (a redirect to sign in, an error) is an error."""
        with self.client.get(path, headers=headers or {}, name=label, allow_redirects=False,
                             catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{path} answered {response.status_code}"
                                 + (f" ({response.error!r})" if response.status_code == 0 else ""))


class Customer(_PortalUser):
    weight = PLAN.get("weights", {}).get("customer", 12)
    audience = "customer"

    @task
    def dashboard(self):
        self._open("dashboard", PLAN["paths"]["dashboard"])

    @task
    def sage_branch(self):
        self._open("Sage branch page", PLAN["paths"]["sage"])

    @task
    def sage_one_branch(self):
        self._open("Sage One AUS branch page", PLAN["paths"]["sage_one"])

    @task
    def job_progress(self):
        self._open("job progress (htmx)", PLAN["paths"]["progress"], {"HX-Request": "true"})


class Support(_PortalUser):
    weight = PLAN.get("weights", {}).get("support", 8)
    audience = "support"

    @task
    def console_search(self):
        self._open("console search (htmx)", f"/support/?q={random.choice(PLAN['searches'])}", {"HX-Request": "true"})

    @task
    def console_overview(self):
        self._open("console overview", "/support/")

    @task
    def customer_page(self):
        self._open("support customer page", PLAN["paths"]["support_customer"])


class Visitor(_PortalUser):
    weight = PLAN.get("weights", {}).get("visitor", 5)
    audience = "visitor"

    @task
    def login_page(self):
        self._open("login page", "/login")
