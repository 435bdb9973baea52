"""Signing of mail that leaves the platform (SPEC §8b).

- :mod:`~mailplane.signing.keys` — DKIM key pairs: generation, the private key files
  (mode 600), the DNS record of a public key.
- :mod:`~mailplane.signing.selectors` — a selector's life: generate, publish, activate,
  retire (the ``mailplane dkim`` commands), with every node reading the same rows.
- :mod:`~mailplane.signing.policy` — what a signature covers and which domain signs.
- :mod:`~mailplane.signing.outbound` — :class:`~mailplane.signing.outbound.OutboundSigner`,
  the one call the outbound worker makes on the bytes it is about to send to a remote
  host: ARC seal (optional) and DKIM signatures, off the event loop.

Stamps are applied in order by the outbound signer (ARC, then DKIM): a successor to ARC
(the IETF's DKIM2 work) would be one more stamp there, not a change to the worker.
"""
