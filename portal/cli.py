"""Command-line entry points: `flask --app app demo-data | worker | create-user`."""
from __future__ import annotations

import click
from flask import Flask, current_app


def register(app: Flask) -> None:
    """Attach the portal's commands to `flask`."""

    @app.cli.command("demo-data")
    def demo_data():
        """Load the demo business, users, contacts and invoices (idempotent; never in production)."""
        if not current_app.config["DEMO_DATA_ALLOWED"]:
            raise click.ClickException("Demo data is only for development and test configurations.")
        from portal import demo

        summary = demo.load()
        click.echo(summary)

    @app.cli.command("worker")
    @click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
    @click.option("--name", default=None, help="Worker name (defaults to RQ's).")
    def worker(burst: bool, name: str | None):
        """Run an RQ worker with this app's config."""
        from portal.worker import build_worker

        build_worker(current_app._get_current_object(), name=name).work(
            burst=burst, with_scheduler=True, logging_level="INFO"
        )
