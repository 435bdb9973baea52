"""The one ``Authentication-Results`` header the MX writes (RFC 8601), and the forged ones
it removes.

RFC 8601 §5: a message must not reach a mailbox carrying an ``Authentication-Results``
with our authserv-id that we did not write — a sender could otherwise claim
``dmarc=pass`` in our name.  Every such field is removed before ours is added on top of
the message (below our ``Received``, as the big receivers do); fields with other
authserv-ids are left alone (they are other ADMDs' claims, which we neither trust nor
hide).  ``ARC-Authentication-Results`` are not touched: they belong to an ARC set, and
removing one would break the chain (RFC 8617).

The MX is not the only way in: submission removes them too (:func:`remove_ours`, with
:func:`node_authserv_id`), so a customer — or whoever stole a POP password — cannot hand
another customer, through the queue's local transport, or a remote receiver a message
that says ``dmarc=pass`` in our name.

Values copied from the message (a ``d=``, the envelope sender) are written as RFC 8601
``pvalue``\\ s: plain when they are a domain or a simple address, otherwise a
quoted-string with every control character replaced — nothing a sender chooses can fold
or end the header line.
"""

from __future__ import annotations

import re

from mailplane.config.settings import Settings
from mailplane.mail.auth_results import AuthResults
from mailplane.mail.message import header_block
from mailplane.mail.rewrite import field_name, header_line, split_message
from mailplane.mail.trace import header_safe

HEADER = "Authentication-Results"
_NAME = b"authentication-results"
_PLAIN = re.compile(r"(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@)?"
                    r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})")
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")


def node_authserv_id(settings: Settings) -> str:
    """Our authserv-id (RFC 8601 §2.5): ``[authentication] authserv_id``, else the node's
    ``mx.hostname`` — what the MX writes, and what the MX and submission remove."""
    return settings.authentication.authserv_id or settings.mx.hostname


def pvalue(text: str) -> str:
    """An RFC 8601 property value: a domain or ``local@domain`` as is, a token as is,
    anything else as a quoted-string."""
    if _PLAIN.fullmatch(text) or _TOKEN.fullmatch(text):
        return text
    safe = header_safe(text, 320).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{safe}"'


def build(authserv_id: str, auth: AuthResults, *, mail_from: str, helo: str) -> str:
    """The header's value: our authserv-id, then one ``method=result`` per check."""
    if not auth.evaluated:
        return f"{authserv_id}; none (sender authentication off: no DNS resolver)"
    parts = [authserv_id]
    sender = mail_from.strip().strip("<>")
    if sender:
        parts.append(f"spf={auth.spf} smtp.mailfrom={pvalue(sender)}")
    else:
        parts.append(f"spf={auth.spf} smtp.helo={pvalue(helo or auth.spf_domain)}")
    if not auth.dkim:
        parts.append("dkim=none")
    for sig in auth.dkim:
        text = f"dkim={sig.result}"
        if sig.domain:
            text += f" header.d={pvalue(sig.domain)}"
        if sig.selector:
            text += f" header.s={pvalue(sig.selector)}"
        if sig.algorithm:
            text += f" header.a={pvalue(sig.algorithm)}"
        if sig.signature_prefix:
            text += f" header.b={pvalue(sig.signature_prefix)}"
        parts.append(text)
    dmarc = f"dmarc={auth.dmarc}"
    if auth.dmarc not in ("none", "permerror") or auth.dmarc_policy != "none":
        dmarc += f" (p={auth.dmarc_policy}{' t=y' if auth.dmarc_testing else ''})"
    if auth.from_domain:
        dmarc += f" header.from={pvalue(auth.from_domain)}"
    parts.append(dmarc)
    parts.append(f"arc={auth.arc}")
    return ";\r\n\t".join(parts)


def authserv_id_of(value: bytes) -> str:
    """The authserv-id an ``Authentication-Results`` value starts with (RFC 8601 §2.2:
    after optional comments and folding; a token or a quoted-string), lower case."""
    text = value.decode("utf-8", "replace")
    position, depth = 0, 0
    while position < len(text):  # skip CFWS, comments nest (RFC 5322 §3.2.2)
        char = text[position]
        if char == "\\" and depth:
            position += 2
            continue
        if char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif not depth and not char.isspace():
            break
        position += 1
    rest = text[position:]
    if rest.startswith('"'):
        match = re.match(r'"((?:[^"\\]|\\.)*)"', rest)
        ident = re.sub(r"\\(.)", r"\1", match.group(1)) if match else rest[1:]
    else:
        ident = re.split(r"[\s;()]", rest, maxsplit=1)[0]
    return ident.strip().lower().rstrip(".")


def remove_ours(raw: bytes, authserv_id: str) -> bytes:
    """``raw`` without any ``Authentication-Results`` claiming ``authserv_id`` (RFC 8601
    §5), however it is spelled (case, comments, a quoted-string, a final dot); ``raw``
    itself when it has none."""
    if _NAME not in header_block(raw).lower():
        return raw
    ours = authserv_id.lower().rstrip(".")
    fields, rest = split_message(raw)
    kept = [f for f in fields if field_name(f) != _NAME.decode()
            or authserv_id_of(f.partition(b":")[2]) != ours]
    if len(kept) == len(fields):
        return raw
    return b"".join(kept) + (rest or b"\r\n")


def stamp(raw: bytes, value: str, authserv_id: str) -> bytes:
    """``raw`` without any ``Authentication-Results`` claiming ``authserv_id``, with ours
    (``value``) on top."""
    return header_line(HEADER, value) + remove_ours(raw, authserv_id)
