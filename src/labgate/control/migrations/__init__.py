"""Alembic migrations of the control server's database, shipped inside the package."""
