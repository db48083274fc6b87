"""Command-line entry points: `flask --app app demo-data | demo-totp | worker | scheduler | create-user`."""
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

    @app.cli.command("demo-connect")
    @click.argument("sandbox_url")
    def demo_connect(sandbox_url: str):
        """Sign the demo's Sydney branch in to the running Sage sandbox and queue its first sync (development)."""
        if not current_app.config["DEMO_DATA_ALLOWED"]:
            raise click.ClickException("demo-connect is only for development and test configurations.")
        from portal import demo

        click.echo(demo.connect_sage_branch(sandbox_url))

    @app.cli.command("demo-totp")
    def demo_totp():
        """Print the demo support user's current two-step sign-in code (development only)."""
        if not current_app.config["DEMO_DATA_ALLOWED"]:
            raise click.ClickException("demo-totp is only for development and test configurations.")
        from portal import demo

        try:
            code = demo.support_code()
        except LookupError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"{code}  (the code for {demo.SUPPORT_EMAIL}; it changes every 30 seconds)")

    @app.cli.command("scheduler")
    def scheduler():
        """Run the scheduler: queues the minutely schedule job (only one leads, however many run)."""
        from portal.extensions import get_redis, patient_with_redis
        from portal.scheduler import build_scheduler

        patient_with_redis(current_app._get_current_object())
        build_scheduler(get_redis(), current_app.config["RQ_QUEUE"],
                        int(current_app.config["SCHEDULER_TICK_SECONDS"])).start()

    @app.cli.command("worker")
    @click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
    @click.option("--name", default=None, help="Worker name (defaults to RQ's).")
    def worker(burst: bool, name: str | None):
        """Run an RQ worker with this app's config."""
        from portal.extensions import patient_with_redis
        from portal.worker import build_worker

        patient_with_redis(current_app._get_current_object())
        build_worker(current_app._get_current_object(), name=name).work(
            burst=burst, with_scheduler=True, logging_level="INFO"
        )
