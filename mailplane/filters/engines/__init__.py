"""Scanner engines: each talks to one scanner (clamd, spamd, rspamd, built-in) behind a protocol.

Engines are the only place where filters touch the outside world (DESIGN "Filters return
Verdicts; they never do I/O except through an engine").
"""
