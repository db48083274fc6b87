"""The Sage tests' workshop (a connected-through-the-sandbox head office) for the Operations tests."""
from tests.integrations.sage.conftest import workshop  # noqa: F401 - a fixture, found by name
