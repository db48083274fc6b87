"""A job used by the job-machinery tests: counts a branch's contacts in steps, with progress."""
from __future__ import annotations

from jobs.runtime import JobFailure, portal_job
from portal.extensions import db
from portal.models import Contact


@portal_job
def count_contacts(progress, branch_id: int, fail: bool = False):
    """Count contacts in steps of 10, reporting progress; `fail` ends in a JobFailure."""
    ids = db.session.scalars(db.select(Contact.id).where(Contact.branch_id == branch_id)).all()
    for done in range(0, len(ids), 10):
        progress.update(done, len(ids))
    progress.update(len(ids), len(ids))
    if fail:
        raise JobFailure("Sage said no: the test asked for a failure.")
    return {"summary": f"Counted {len(ids)} contacts.", "count": len(ids)}


@portal_job
def write_slowly(progress, branch_id: int, steps: int, pause: float):
    """Rename the branch's contacts one a step, checking the lease before each write, as syncs do."""
    import time

    from portal.models import Contact

    rows = db.session.scalars(db.select(Contact).where(Contact.branch_id == branch_id).order_by(Contact.id)).all()
    for n, contact in enumerate(rows[:steps]):
        time.sleep(pause)
        progress.check()
        contact.name = f"written {n}"
        db.session.commit()
        progress.update(n + 1, steps)
    return {"summary": f"Wrote {steps}."}
