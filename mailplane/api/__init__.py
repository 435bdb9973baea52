"""Management API (FastAPI): thin routers over repository functions (SPEC §11)."""
