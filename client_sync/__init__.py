"""The device side: an offline SQLite outbox and the sync engine (see docs/sync-protocol.md).

The library and its CLI arrive with the offline-sync issue (#3).
"""
