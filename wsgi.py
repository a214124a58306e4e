"""WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi …`."""

from dotenv import load_dotenv

from server import create_app, settle

load_dotenv()
app = settle(create_app())
