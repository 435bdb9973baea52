"""Persistence: SQLAlchemy models, engine/session factory, repositories (all SQL lives here)."""
