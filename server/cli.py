"""flask --app wsgi COMMAND: the database, demo data and user management."""

from __future__ import annotations

import click
from flask import Flask, current_app

from server import db


@click.command("db-upgrade")
def db_upgrade() -> None:
    """Create or migrate the database to the newest schema (Alembic)."""
    db.upgrade(current_app.config["DATABASE_URL"])
    click.echo("数据库已是最新结构。")


@click.command("seed-demo")
def seed_demo() -> None:
    """Load the demo Xuzhou data set (once; running it again changes nothing)."""
    from server.demo import seed

    with db.session_scope() as session:
        created = seed(session)
    click.echo("演示数据已载入。" if created else "演示数据已存在，未作改动。")
    _print_accounts()


def _print_accounts() -> None:
    from server.demo import DEMO_ACCOUNTS, DEMO_PASSWORD

    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    click.echo(f"接口文档与登录：{base}/api/docs （POST {base}/api/v1/auth/login）")
    click.echo(f"演示账号（密码均为 {DEMO_PASSWORD}）：")
    for username, _role, label in DEMO_ACCOUNTS:
        click.echo(f"  {username:<12} {label}")


def init_app(app: Flask) -> None:
    from server.jobs.commands import COMMANDS as JOB_COMMANDS

    for command in (db_upgrade, seed_demo, *JOB_COMMANDS):
        app.cli.add_command(command)
