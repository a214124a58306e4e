"""The app's version: sent as X-Client-Version, compared with the server's MIN_CLIENT_VERSION."""

__version__ = "0.1.0"
