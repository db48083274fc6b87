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
