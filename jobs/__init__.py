"""RQ entry points. Each takes ids (and, where a rule needs it, a sealed key), never ORM objects,
runs inside the app context the worker provides, and reports progress through `jobs.runtime`."""
