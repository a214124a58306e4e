"""The device side: an offline SQLite outbox and the sync engine (see docs/sync-protocol.md).

The library and its CLI arrive with the offline-sync issue; for now the package holds the
shared version constants the server already checks against.
"""

PROTOCOL_VERSION = 1
