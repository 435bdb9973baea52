"""どこでもメール (001 L4102, L4163, L4645; SPEC §9b): IMAP by Dovecot and the webmail by
Roundcube over the same Maildirs, every login checked by mailplane.

- :mod:`~mailplane.anywhere.login_check` — the check Dovecot's passdb and the webmail's
  sign-in call (the POP3/submission credential check, under the login guard);
- :mod:`~mailplane.anywhere.dovecot` — Dovecot's configuration and, on one machine, the
  node's own Dovecot;
- :mod:`~mailplane.anywhere.roundcube` — Roundcube's configuration and, on one machine,
  PHP's server for it;
- :mod:`~mailplane.anywhere.children` — the external processes a node starts and stops
  by their PID.
"""
