"""Alembic migrations for lifelong's schema."""
