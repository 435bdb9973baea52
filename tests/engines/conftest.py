"""Engine tests share one clamd and one spamd per session (tests/daemons.py, loaded as a
plugin by tests/conftest.py)."""
