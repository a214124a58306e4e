"""The problem's lifecycle follows its outcome; a deferred problem always says why."""

from __future__ import annotations

from schemas.enums import ProblemOutcome, ProblemStatus


class OutcomeError(ValueError):
    """An outcome that the rules refuse, with the field it concerns."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def status_for(outcome: ProblemOutcome | None) -> ProblemStatus:
    """Solved and deferred problems are closed; coordinating and untouched ones stay open."""
    if outcome in (ProblemOutcome.solved, ProblemOutcome.deferred):
        return ProblemStatus.closed
    return ProblemStatus.open


def check_outcome(outcome: ProblemOutcome | None, reason: str | None) -> None:
    """Raise OutcomeError unless the outcome carries what it needs."""
    if outcome is ProblemOutcome.deferred and not (reason and reason.strip()):
        raise OutcomeError("outcome_reason", "A deferred problem needs a reason.")
