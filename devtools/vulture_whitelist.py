"""Names vulture (`make lint`) cannot see used: read by a library, a template or by string.

Not imported by anything; each line only mentions a name. Routes, hooks, fixtures, checklist
checks and actions, RQ entry points and listeners are left out by decorator (pyproject.toml).
"""
# ruff: noqa: B018
_ = object()

# gunicorn reads gunicorn.conf.py's names; Flask-Login, requests, json and socketserver read these.
_.worker_class, _.logger_class, _.GunicornLogger
_.child_exit, _.on_starting, _.post_worker_init, _.logconfig_dict  # gunicorn: hooks and the log configuration

# Migration 0019 creates and drops the record tallies' triggers with these (migrations/ is not scanned).
_.trigger_ddl, _.drop_ddl
_.collect  # prometheus-client calls a custom collector's collect() at each scrape
_.metrics_started  # flask.g, read back by name
_.login_view, _.login_message, _.login_message_category, _.session_protection, _.permanent
_.trust_env, _.proxies, _.sort_keys, _.compact, _.daemon_threads, _.log_request

# SQLAlchemy: a TypeDecorator's hooks, columns written by the database or read in templates.
_.impl, _.cache_ok, _.process_bind_param, _.process_result_value
_.updated_at, _.paused_at, _.synced_at, _.finished_by, _.last_login_at
_.issued_at, _.refresh_expires_at  # the Sage page's token facts (pages.TokenHealth), read in its template

# The `limits` storage calls these on the Sage One AUS limiter's storage.
_.acquire_entry, _.get_moving_window

# RQ entry points enqueued by dotted name.
_.send_password_reset, _.sync_branch
_._dependency_ids  # an RQ job's parents, saved by Job.save (portal/jobqueue.py moves a dead run's dependents)

# Read only by templates.
_.is_current, _.help, _.is_open, _.display_name, _.as_of, _.as_whom, _.age, _.saved_is_gone, _.last_job
_.is_connected, _.has_previous, _.filter_args, _.other_provider, _.recent_jobs, _.api_key_refused
_.is_empty, _.as_args, _.first_index, _.last_index, _.invoice_number
_.suggested_outcome, _.suggested_message, _.notes
_.top_failure, _.signed_in_as
_.deferred, _.oldest_waiting_since, _.born_at, _.busy_since, _.job_description, _.finished_count
_.failed_count, _.is_stale, _.idle, _.looked_at, _.is_due  # the Operations page's sections

# Flask's `g`, read with g.get("name").
_.puppet_session_just_ended, _.flashes_before, _.puppet_refusal_recorded

# The void outcomes Sage shows as void (portal/voids.py), kept beside them for the void pages.
_.done_in_sage

# Counters a run keeps for whoever inspects the client or limiter (benchmarks, a debugger).
_.retried_requests, _.waited_seconds

# pytest: module marks, and fixtures asked for only for what they set up.
_.pytestmark, _.live_worker, _.integration_routes, _.every_logger_enabled
