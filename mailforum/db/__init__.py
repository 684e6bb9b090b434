"""Schema and persistence: SQLAlchemy only, no email parsing."""
