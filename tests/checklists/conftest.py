"""The Sage integration's fixtures (a workshop, a real worker draining jobs), for the void checklist's walks."""
from tests.integrations.sage.conftest import run_jobs, workshop  # noqa: F401  (fixtures)
