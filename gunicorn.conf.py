"""How gunicorn serves the portal; gunicorn reads this file itself when started from this directory
(`gunicorn app:app`), so `make run`, the console benchmark and a production start agree.

A portal request is CPU-bound Python (SQL through SQLAlchemy, Jinja rendering), and one process
runs Python on one core at a time, so processes are what use the cores: gunicorn's rule of thumb,
two per core plus one. Each also runs two threads, for the requests that wait on the network (a
checklist's live checks call Sage). On the 2-core machine, five processes of two threads answered
the console about a tenth faster under load than two processes of four (docs/benchmarks.md).
`WEB_CONCURRENCY` (gunicorn's own variable) overrides the number of processes.
"""
import multiprocessing
import os

workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
threads = 2
worker_class = "gthread"
# Access-log lines carry no query strings (OAuth codes, reset tokens): portal/access_log.py.
logger_class = "portal.access_log.GunicornLogger"

# Metrics (portal/metrics.py): with PROMETHEUS_MULTIPROC_DIR set, every process of the host writes
# its figures there and any web process's /metrics adds them up; a web process that exits has its
# live gauges dropped (its counters stay counted).
# Logs: with PORTAL_LOG_FORMAT=json (production's default) gunicorn's own lines are JSON objects too.


def on_starting(server):
    # Imported once in the master before any worker exits: importing it first inside child_exit,
    # when every worker exits at once on a stop, ran the import re-entrantly and failed.
    import portal.metrics  # noqa: F401


def post_worker_init(worker):
    # The app is loaded now (modules, mappings, compiled statements) and lives as long as the process:
    # frozen out of the garbage collector's sight, a request's collections scan what the request made
    # instead of the whole app again (a full collection in the middle of a page doubled its time).
    import gc

    gc.collect()
    gc.freeze()


def child_exit(server, worker):
    from portal import metrics

    metrics.mark_process_dead(worker.pid)


def _json_logs() -> bool:
    fmt = os.environ.get("PORTAL_LOG_FORMAT") or ("json" if os.environ.get("PORTAL_ENV") == "production" else "")
    return fmt.lower() == "json"


if _json_logs():
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "portal.json_logs.JsonFormatter"}},
        "handlers": {
            "error_console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
            "console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
        },
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
        },
    }
