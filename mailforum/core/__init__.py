"""Decisions and use cases: take a session, a clock and settings as arguments; no sockets."""
