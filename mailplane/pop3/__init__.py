"""POP3 (RFC 1939, CAPA RFC 2449, STLS RFC 2595) over the addresses' Maildirs (SPEC §8)."""
