"""Guided troubleshooting checklists: scenarios as data, read-only checks, runs with outcomes."""
