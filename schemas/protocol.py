"""Versions both sides check: the sync protocol and the oldest device app the server accepts."""

PROTOCOL_VERSION = 1
