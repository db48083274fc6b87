"""Helpers for running the portal locally and in tests (not imported by the portal itself)."""
