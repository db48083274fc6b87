"""All portal models, importable from one place (and seen by Alembic autogenerate)."""
from portal.models.accounts import Branch, Business, Role, User, find_user_by_email
from portal.models.audit import AuditEvent, AuditLogIsAppendOnly, PuppetSession
from portal.models.base import SoftDeleteMixin, unscoped, utcnow
from portal.models.checklists import ChecklistRun, ChecklistStepResult, RunOutcome, RunStatus
from portal.models.connections import Connection, ConnectionState, Provider, SyncOutcome
from portal.models.credentials import PasswordResetToken, RecoveryCode
from portal.models.customer_search import CustomerSearch
from portal.models.jobs import ACTIVE_STATUSES, Job, JobStatus
from portal.models.ledger import (
    Contact,
    ContactKind,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    SyncState,
)
from portal.models.notifications import Notification
from portal.models.sage_mappings import SageAccountMapping
from portal.models.tallies import FailureTally, RecordTally

__all__ = [
    "ACTIVE_STATUSES",
    "AuditEvent",
    "AuditLogIsAppendOnly",
    "Notification",
    "FailureTally",
    "RecordTally",
    "Branch",
    "ChecklistRun",
    "ChecklistStepResult",
    "Business",
    "Connection",
    "ConnectionState",
    "Contact",
    "ContactKind",
    "CustomerSearch",
    "Invoice",
    "InvoiceLine",
    "InvoiceStatus",
    "Job",
    "JobStatus",
    "PasswordResetToken",
    "Provider",
    "PuppetSession",
    "RecoveryCode",
    "Role",
    "RunOutcome",
    "RunStatus",
    "SageAccountMapping",
    "SoftDeleteMixin",
    "SyncOutcome",
    "SyncState",
    "User",
    "find_user_by_email",
    "unscoped",
    "utcnow",
]
