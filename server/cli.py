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
    if created:
        click.echo("演示数据已载入。")
    else:
        click.echo("演示数据已存在，未作改动。")


def init_app(app: Flask) -> None:
    for command in (db_upgrade, seed_demo):
        app.cli.add_command(command)
