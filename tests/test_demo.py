"""The demo data set's referrals: made by the services at past moments, in every state, so that the
scheduler `make run` starts beside the server has notices to send on its first sweep.

The article's figures the demo carries are checked in tests/test_reports.py.
"""

from __future__ import annotations

import collections
import datetime as dt

from sqlalchemy import func, select

from server.db import read_session, session_scope
from server.db.followup_models import FollowUp, MailMessage, NoticeSent, Referral, ReferralProblem
from server.db.models import Campaign, Problem
from server.demo import REFERRAL_PLANS, _seed_people_and_visits, seed
from server.jobs import jobs
from tests.scheduler_helpers import bj

TODAY = dt.date(2026, 11, 25)  # a Wednesday


def test_the_demo_issues_referrals_in_every_state_and_the_first_sweep_sends_notices(app):
    with session_scope(app) as session:
        assert seed(session, today=TODAY) is True
    with session_scope(app) as session:
        assert seed(session, today=TODAY) is False  # make run seeds every time: one set only
    with read_session(app) as session:
        states = collections.Counter(session.scalars(select(Referral.status)))
        assert sum(states.values()) == len(REFERRAL_PLANS)
        assert states == {
            "issued": 2,
            "signed": 4,
            "extension_requested": 1,
            "return_requested": 1,
            "responded": 1,
            "closed": 3,
        }
        # Only open problems of the newest campaign: the other two carry the article's figures.
        campaigns = set(
            session.scalars(
                select(Campaign.code)
                .join(Problem, Problem.campaign_id == Campaign.id)
                .join(ReferralProblem, ReferralProblem.problem_id == Problem.id)
            )
        )
        assert campaigns == {"zqtx"}
        outcomes = collections.Counter(session.scalars(select(Referral.outcome).where(Referral.status == "closed")))
        assert outcomes == {"solved": 2, "coordinating": 1}
        revisits = {(f.status, f.satisfaction) for f in session.scalars(select(FollowUp)) if f.kind == "revisit"}
        assert revisits == {("open", None), ("done", "satisfied")}
        assert all(f.assignee_id is not None for f in session.scalars(select(FollowUp)))

    # The scheduler's first sweep on the seeding day, as `make run` starts it.
    report = jobs.sweep(app, bj(2026, 11, 25, 9, 10))
    assert report.by_kind == {"sign_reminder": 2, "reminder": 2, "escalation": 2, "progress_check": 1}
    assert report.notices == report.mails == 7 and report.progress_checks == 1
    with read_session(app) as session:
        keys = {(k, t) for k, t in session.execute(select(NoticeSent.kind, NoticeSent.threshold))}
        assert keys == {
            ("sign_reminder", "after-1"),
            ("reminder", "due-day"),
            ("reminder", "before-2"),
            ("escalation", "overdue-1"),
            ("escalation", "overdue-5"),
            ("progress_check", "next-date"),
        }
        assert session.scalar(select(func.count()).select_from(MailMessage)) == 7
    assert jobs.sweep(app, bj(2026, 11, 25, 9, 15)).notices == 0  # each notice once


def test_a_demo_database_from_before_the_referrals_gets_them_once(app):
    with session_scope(app) as session:
        _seed_people_and_visits(session, TODAY)  # what seed-demo loaded before it issued referrals
    with session_scope(app) as session:
        assert seed(session, today=TODAY + dt.timedelta(days=7)) is True
    with session_scope(app) as session:
        assert seed(session, today=TODAY + dt.timedelta(days=7)) is False
    with read_session(app) as session:
        assert session.scalar(select(func.count()).select_from(Referral)) == len(REFERRAL_PLANS)


def test_the_demo_indexes_its_visits_as_the_app_does(app):
    """Summary and place, as a POSTed or pushed note is indexed: search finds a demo note by
    either."""
    from server.db.models import SearchEntry, Visit
    from server.domain.search import index_tokens

    with session_scope(app) as session:
        seed(session, today=TODAY)
    with read_session(app) as session:
        rows = session.execute(
            select(Visit.summary, Visit.location_text, SearchEntry.tokens).join(
                SearchEntry, (SearchEntry.record_id == Visit.id) & (SearchEntry.kind == "visit")
            )
        ).all()
        assert len(rows) == session.scalar(select(func.count()).select_from(Visit)) > 0
        assert any(location for _, location, _ in rows)
        assert all(tokens == index_tokens(summary, location) for summary, location, tokens in rows)
