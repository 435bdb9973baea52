"""Sender authentication of inbound mail on the MX (SPEC §8b): SPF (RFC 7208), DKIM (RFC
6376), DMARC (RFC 9989, policy discovery by the DNS tree walk) and ARC (RFC 8617), written
into one ``Authentication-Results`` header (RFC 8601).

- :mod:`~mailplane.mailauth.dns` — the lookups every check makes: one resolver, a cache,
  a deadline per message (a lookup past it is ``temperror``, never a wait).
- :mod:`~mailplane.mailauth.spf`, :mod:`~mailplane.mailauth.dmarc` — our own async
  evaluators on dnspython (pyspf is synchronous; Stalwart's mail-auth is the model).
- :mod:`~mailplane.mailauth.dkim` — DKIM verified with ``cryptography``, ARC with dkimpy:
  keys fetched by our resolver first, the CPU work then runs with those answers (in a
  thread for large mail).
- :mod:`~mailplane.mailauth.header` — the header we write and the forged ones we remove.
- :mod:`~mailplane.mailauth.verifier` — what the MX calls: SPF started at the first
  accepted RCPT, the rest at DATA, all under one time budget.

The outcome is a :class:`~mailplane.mail.auth_results.AuthResults` on
``MessageContext.auth``; what happens to the mail because of it is the filters' business
(:mod:`mailplane.filters.spoofing`, the spam engines).
"""
