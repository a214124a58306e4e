"""The scheduler loop: APScheduler 3 in Asia/Shanghai, run only while this process holds the leader lock.

    job               when (Beijing time)                          catch-up grace
    sweep             every SCHEDULER_SWEEP_MINUTES, SCHEDULER_SWEEP_HOURS    30 minutes
    weekly-digest     08:00 on the week's first working day        1 day
    calendar-check    daily 09:00                                  1 day
    cleanup-uploads   daily 03:30                                  1 day
    send-mail         every minute                                 10 minutes

Jobs have explicit ids, replace_existing, coalesce (a backlog runs once) and a generous
misfire_grace_time. APScheduler keeps jobs in memory, so the `job_runs` table plays the part of a
persistent job store: when a process becomes the leader it runs, once, each job whose latest
scheduled time within its grace has no finished run since, which is how a restarted scheduler
catches up after downtime (and a job killed halfway is run again; its own records make that
safe). `run_once` does the same and exits: the tests' entry point, and a way to drive the jobs
from cron instead of a long-running process.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from flask import Flask
from sqlalchemy import select, update

from server.db import read_session, session_scope
from server.db.followup_models import JobRun
from server.db.types import utcnow
from server.db.upsert import upsert
from server.domain.periods import SHANGHAI
from server.jobs import jobs
from server.jobs.leader import Leader, leader_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSpec:
    id: str
    func: Callable[[Flask, dt.datetime | None], Any]
    trigger: BaseTrigger
    grace: dt.timedelta
    description: str


def job_specs(config: dict[str, Any] | Any) -> list[JobSpec]:
    """The jobs in the order `run_once` runs them (mail last, so that what the others queue goes out)."""
    minutes = max(1, int(config.get("SCHEDULER_SWEEP_MINUTES") or 5))
    hours = str(config.get("SCHEDULER_SWEEP_HOURS") or "8-19")
    tz = SHANGHAI
    return [
        JobSpec(
            "sweep",
            jobs.sweep,
            CronTrigger(minute=f"*/{minutes}", hour=hours, timezone=tz),
            dt.timedelta(minutes=30),
            "催办、督办、签收提醒、进展跟踪",
        ),
        JobSpec(
            "weekly-digest",
            jobs.weekly_digest,
            # Daily: the job acts on the week's first working day (Monday unless a holiday) only.
            CronTrigger(hour=8, minute=0, timezone=tz),
            dt.timedelta(days=1),
            "周报",
        ),
        JobSpec(
            "calendar-check",
            jobs.calendar_check,
            CronTrigger(hour=9, minute=0, timezone=tz),
            dt.timedelta(days=1),
            "节假日数据检查",
        ),
        JobSpec(
            "cleanup-uploads",
            jobs.cleanup_uploads,
            CronTrigger(hour=3, minute=30, timezone=tz),
            dt.timedelta(days=1),
            "清理中断的上传",
        ),
        JobSpec(
            "send-mail",
            jobs.send_mail,
            CronTrigger(minute="*", timezone=tz),
            dt.timedelta(minutes=10),
            "发送邮件",
        ),
    ]


def last_fire_time(trigger: BaseTrigger, now: dt.datetime, grace: dt.timedelta) -> dt.datetime | None:
    """The latest time `trigger` fired at or before `now`, looking back no further than `grace`."""
    latest = None
    moment = trigger.get_next_fire_time(None, now - grace)
    while moment is not None and moment <= now:
        latest = moment
        moment = trigger.get_next_fire_time(moment, moment + dt.timedelta(seconds=1))
    return latest.astimezone(dt.UTC) if latest else None


def _covered(run: tuple[dt.datetime | None, dt.datetime | None] | None, scheduled: dt.datetime) -> bool:
    """A run (started, finished) started at or after `scheduled` and finished: one that died or failed
    does not count."""
    if run is None:
        return False
    started, finished = run
    if started is None or finished is None:
        return False
    return started >= scheduled and finished >= started


def due_jobs(app: Flask, now: dt.datetime, specs: Iterable[JobSpec]) -> list[JobSpec]:
    """The jobs whose latest scheduled time (within their grace) has no finished run yet."""
    with read_session(app) as session:
        rows = session.execute(select(JobRun.job, JobRun.last_started_at, JobRun.last_finished_at))
        runs = {job: (started, finished) for job, started, finished in rows}
    due = []
    for spec in specs:
        scheduled = last_fire_time(spec.trigger, now, spec.grace)
        if scheduled is not None and not _covered(runs.get(spec.id), scheduled):
            due.append(spec)
    return due


def run_job(app: Flask, spec: JobSpec, now: dt.datetime | None = None, leader: Leader | None = None) -> bool:
    """Run one job, recording it in job_runs; False when skipped (not the leader) or failed.

    The finish time recorded is the start plus the time taken, so that a job run at a given
    `now` counts as having run then (the catch-up rule compares scheduled times with these).
    """
    if leader is not None and not leader.held:
        log.warning("job %s skipped: this process is no longer the scheduler's leader", spec.id)
        return False
    started = now or utcnow()
    clock = time.monotonic()
    with app.app_context():
        with session_scope(app) as session:
            upsert(
                session,
                JobRun,
                {"job": spec.id, "last_started_at": started, "runs": 0},
                ["job"],
                {"last_started_at": started},
            )
        try:
            result = spec.func(app, now)
        except Exception as e:
            log.exception("job %s failed", spec.id)
            with session_scope(app) as session:
                session.execute(
                    update(JobRun).where(JobRun.job == spec.id).values(last_error=f"{type(e).__name__}: {e}"[:2000])
                )
            return False
        took = time.monotonic() - clock
        with session_scope(app) as session:
            session.execute(
                update(JobRun)
                .where(JobRun.job == spec.id)
                .values(last_finished_at=started + dt.timedelta(seconds=took), last_error=None, runs=JobRun.runs + 1)
            )
    log.info("job %s done in %.2f s%s", spec.id, took, f": {result}" if result is not None else "")
    return True


class Scheduler:
    """The scheduler process: stand by until it holds the leader lock, then run the jobs."""

    def __init__(self, app: Flask, leader: Leader | None = None, specs: list[JobSpec] | None = None) -> None:
        self.app = app
        self.leader = leader or leader_for(app)
        self.specs = specs or job_specs(app.config)
        self.stop = threading.Event()

    def run_once(
        self, now: dt.datetime | None = None, *, wait: float = 0.0, only: Iterable[str] | None = None
    ) -> list[str] | None:
        """Become the leader (waiting up to `wait` seconds), run the due jobs once, let go.

        Returns the ids of the jobs run, or None when another process held the lock throughout.
        """
        deadline = time.monotonic() + wait
        while not self.leader.acquire():
            if time.monotonic() >= deadline or self.stop.wait(min(0.5, self.leader.check_interval)):
                log.info("scheduler: another process is the leader (%s); nothing run", self.leader.describe())
                return None
        ran: list[str] = []
        wanted = set(only) if only else None
        try:
            for spec in due_jobs(self.app, now or utcnow(), self.specs):
                if wanted is not None and spec.id not in wanted:
                    continue
                if not self.leader.check():
                    log.error("scheduler: lost the leader lock; stopping")
                    break
                if run_job(self.app, spec, now, self.leader):
                    ran.append(spec.id)
        finally:
            self.leader.release()
        return ran

    def run_forever(self) -> None:
        """Until `stop` is set: lead when possible (catching up once), stand by otherwise."""
        standby_logged = False
        try:
            while not self.stop.is_set():
                if not self.leader.acquire():
                    if not standby_logged:
                        log.info("scheduler: standing by; another process is the leader (%s)", self.leader.describe())
                        standby_logged = True
                    self.stop.wait(self.leader.check_interval)
                    continue
                standby_logged = False
                log.info("scheduler: leading (%s)", self.leader.describe())
                self._lead()
        finally:
            self.leader.release()
            log.info("scheduler: stopped")

    def _lead(self) -> None:
        scheduler = BackgroundScheduler(
            timezone=SHANGHAI,
            executors={"default": ThreadPoolExecutor(3)},
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        catch_up = {spec.id for spec in due_jobs(self.app, utcnow(), self.specs)}
        for spec in self.specs:
            options: dict[str, Any] = {}
            if spec.id in catch_up:
                options["next_run_time"] = dt.datetime.now(SHANGHAI)  # once now, then on schedule
            scheduler.add_job(
                run_job,
                spec.trigger,
                args=[self.app, spec],
                kwargs={"leader": self.leader},
                id=spec.id,
                name=spec.description,
                replace_existing=True,
                coalesce=True,
                misfire_grace_time=int(spec.grace.total_seconds()),
                **options,
            )
        if catch_up:
            log.info("scheduler: catching up once on %s", ", ".join(sorted(catch_up)))
        scheduler.start()
        try:
            while not self.stop.wait(self.leader.check_interval):
                if not self.leader.check():
                    log.error("scheduler: lost the leader lock; pausing until it can be taken again")
                    break
        finally:
            scheduler.shutdown(wait=True)
