"""The device side of the sync protocol (docs/sync-protocol.md): an offline SQLite outbox and cache,
and the engine that pushes notes, pulls changes and uploads files (tus) when there is a network.

Public surface: ``Client``, the exceptions below (their tree is drawn in client_sync.errors),
``Progress`` and ``SyncReport`` for progress callbacks and results, and ``__version__``.
The CLI over it: ``python -m client_sync --help``.
"""

from client_sync.client import Client
from client_sync.engine import Progress, SyncReport
from client_sync.errors import (
    ApiError,
    CursorExpired,
    LoginRequired,
    NetworkError,
    NoteInvalid,
    ProtocolError,
    SequenceGap,
    ServerUnavailable,
    StoreError,
    SyncError,
    TransportError,
    UpgradeRequired,
    UsageError,
)
from client_sync.version import __version__

__all__ = [
    "ApiError",
    "Client",
    "CursorExpired",
    "LoginRequired",
    "NetworkError",
    "NoteInvalid",
    "Progress",
    "ProtocolError",
    "SequenceGap",
    "ServerUnavailable",
    "StoreError",
    "SyncError",
    "SyncReport",
    "TransportError",
    "UpgradeRequired",
    "UsageError",
    "__version__",
]
