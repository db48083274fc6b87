"""Checklist runs: a support person working through a troubleshooting scenario for one customer."""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import UTCDateTime, utcnow, value_enum


class RunStatus(str, enum.Enum):
    IN_PROGRESS = "in_progress"
    PAUSED = "paused"
    FINISHED = "finished"

    @property
    def label(self) -> str:
        return {"in_progress": "In progress", "paused": "Paused", "finished": "Finished"}[self.value]


class RunOutcome(str, enum.Enum):
    RESOLVED = "resolved"
    CUSTOMER_ACTION = "customer_action"
    ESCALATED = "escalated"

    @property
    def label(self) -> str:
        return {
            "resolved": "Resolved",
            "customer_action": "Customer action needed",
            "escalated": "Escalated",
        }[self.value]


class ChecklistRun(db.Model):
    """One scenario worked through for one customer (and usually one branch)."""

    __tablename__ = "checklist_runs"
    __table_args__ = (
        Index("ix_checklist_runs_business_started", "business_id", "started_at"),
        Index("ix_checklist_runs_scenario_outcome", "scenario", "outcome"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    scenario: Mapped[str] = mapped_column(String(80))
    business_id: Mapped[int] = mapped_column(ForeignKey("businesses.id"))
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branches.id"), index=True)
    # Scenario-specific subject, e.g. {"invoice_id": 12} for "voided but Sage still shows it".
    subject: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[RunStatus] = mapped_column(value_enum(RunStatus, 30), default=RunStatus.IN_PROGRESS, index=True)
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # Who is working on it now (changes when another support person resumes it).
    holder_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pause_note: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    outcome: Mapped[RunOutcome | None] = mapped_column(value_enum(RunOutcome, 30))
    # The message to send the customer (customer action) or the closing note.
    outcome_message: Mapped[str | None] = mapped_column(Text)
    # Plain-text diagnostics, frozen at the end, to paste into a ticket.
    diagnostics: Mapped[str | None] = mapped_column(Text)

    business = relationship("Business")
    branch = relationship("Branch")
    started_by = relationship("User", foreign_keys=[started_by_id])
    holder = relationship("User", foreign_keys=[holder_id])
    finished_by = relationship("User", foreign_keys=[finished_by_id])
    step_results: Mapped[list[ChecklistStepResult]] = relationship(
        back_populates="run", order_by="ChecklistStepResult.id", cascade="all, delete-orphan"
    )

    @property
    def is_open(self) -> bool:
        return self.status != RunStatus.FINISHED

    def __repr__(self) -> str:
        return f"<ChecklistRun {self.id} {self.scenario} {self.status.value}>"


class ChecklistStepResult(db.Model):
    """One thing recorded on a step: a check's result and evidence, an answer, an action, a note.

    Rows are added, never changed: a re-check adds a new row, so the evidence seen earlier stays.
    """

    __tablename__ = "checklist_step_results"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("checklist_runs.id"), index=True)
    step_id: Mapped[str] = mapped_column(String(60))
    # check / answer / action / note
    kind: Mapped[str] = mapped_column(String(20))
    # pass / fail / warn / unknown for checks; done / refused for actions; the choice for answers.
    result: Mapped[str | None] = mapped_column(String(40))
    summary: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[dict] = mapped_column(JSON, default=dict)
    note: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    run: Mapped[ChecklistRun] = relationship(back_populates="step_results")
    recorded_by = relationship("User")
