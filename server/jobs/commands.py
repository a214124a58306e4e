"""flask --app wsgi scheduler | digest-preview | mail-status: the scheduler, digests and mail from the shell."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from server import db
from server.db.types import utcnow
from server.domain.periods import SHANGHAI, local_date


def _moment(_ctx: Any, _param: Any, value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError as e:
        raise click.BadParameter("give an ISO date and time, e.g. 2026-11-30T08:00:00+08:00") from e
    return (moment if moment.tzinfo else moment.replace(tzinfo=SHANGHAI)).astimezone(dt.UTC)


@click.command("scheduler")
@click.option("--once", is_flag=True, help="Run the jobs that are due (catching up once) and exit.")
@click.option("--wait", type=float, default=0.0, help="With --once: wait this many seconds for the lock.")
@click.option("--job", "only", multiple=True, help="With --once: only these jobs (sweep, weekly-digest, send-mail …).")
@click.option("--now", callback=_moment, hidden=True, help="Pretend it is this moment (tests, replays).")
@with_appcontext
def scheduler_command(once: bool, wait: float, only: tuple[str, ...], now: dt.datetime | None) -> None:
    """Run the scheduler: reminders, escalations, digests, mail. Exactly one acts at a time."""
    from server.jobs.scheduler import Scheduler

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    process = Scheduler(app)
    if once:
        ran = process.run_once(now, wait=wait, only=only or None)
        if ran is None:
            click.echo("另一个调度进程正在运行，本次未执行任何任务。")
        else:
            click.echo("已执行：" + ("、".join(ran) if ran else "无到期任务"))
        return

    def stop(signum: int, _frame: Any) -> None:
        process.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    click.echo(f"调度进程已启动（{process.leader.describe()}），Ctrl-C 停止。")
    process.run_forever()


@click.command("digest-preview")
@click.option("--department", "who", required=True, help="A department code, or 'supervisors' for the bureau summary.")
@click.option("--week", help="ISO week, e.g. 2026-W48 (default: this week).")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, writable=True), help="Write the HTML here.")
@with_appcontext
def digest_preview(who: str, week: str | None, html_file: str | None) -> None:
    """Show a department's weekly digest (or the supervisors' summary) for any week; sends nothing."""
    from server.services import digests

    try:
        week = digests.parse_week(week) if week else digests.iso_week(local_date(utcnow()))
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--week") from e
    with db.read_session() as session:
        try:
            mail = digests.preview(session, who, week, base_url=current_app.config["PUBLIC_BASE_URL"])
        except LookupError as e:
            raise click.BadParameter(f"没有代码为 {who} 的部门", param_hint="--department") from e
    if html_file:
        Path(html_file).write_text(mail.html or "", encoding="utf-8")
        click.echo(f"主题：{mail.subject}\nHTML 已写入 {html_file}")
        return
    click.echo(f"主题：{mail.subject}\n")
    click.echo(mail.text)


@click.command("mail-status")
@click.option("--retry-failed", is_flag=True, help="Queue the failed messages again (after fixing the settings).")
@with_appcontext
def mail_status(retry_failed: bool) -> None:
    """Count the mail outbox by status and list the messages that failed for good."""
    from server.mail import outbox

    with db.session_scope() as session:
        if retry_failed:
            click.echo(f"已重新排队 {outbox.requeue_failed(session)} 封。")
        counts = outbox.counts(session)
        click.echo("  ".join(f"{status} {n}" for status, n in counts.items()))
        for message in outbox.failed(session):
            when = message.created_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
            click.echo(f"失败 {when} {', '.join(message.to_addrs)} 「{message.subject}」：{message.last_error}")
    if counts.get("failed") and not retry_failed:
        sys.exit(1)


COMMANDS = (scheduler_command, digest_preview, mail_status)
