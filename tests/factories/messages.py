"""The one message factory of the tests: :func:`message` builds a plain RFC 5322 message
(CRLF) with the headers a test names; the samples below (EICAR attachments, GTUBE) are
built on the email package for the engine tests.  Capability factories (``mx``,
``submission``, ``queue``) bind their usual defaults to :func:`message` with a partial."""

from __future__ import annotations

from email.message import EmailMessage

from tests.factories.daemons import EICAR, GTUBE

__all__ = ["EICAR", "GTUBE", "message"]

DATE = "Mon, 23 Nov 2026 12:00:00 +0900"


def message(
    *,
    sender: str | None = "alice@sender.example",
    sender_name: str | None = None,
    to: str = "taro_1@e06.example.net",
    subject: str | None = "Hello",
    body: str | bytes = "Hi there.\r\nHow are you?\r\n",
    extra_headers: str = "",
    message_id: str | None = "<test@sender.example>",
    date: str | None = DATE,
) -> bytes:
    """A message with From (absent when ``sender`` is None), To, Subject (absent when
    None), Date and Message-ID (each absent when None), ``extra_headers`` (CRLF-ended
    lines) and ``body``."""
    lines = []
    if sender is not None:
        lines.append(f"From: {sender_name} <{sender}>" if sender_name else f"From: {sender}")
    lines.append(f"To: {to}")
    if subject is not None:
        lines.append(f"Subject: {subject}")
    if date is not None:
        lines.append(f"Date: {date}")
    if message_id is not None:
        lines.append(f"Message-ID: {message_id}")
    head = ("\r\n".join(lines) + "\r\n" + extra_headers + "\r\n").encode("utf-8")
    return head + (body if isinstance(body, bytes) else body.encode("utf-8"))


def ordinary_message(body: str = "Hi Bob,\n\nsee you at the meeting at 10.\n\nAlice\n") -> bytes:
    message = EmailMessage()
    message["From"] = "Alice Example <alice@example.org>"
    message["To"] = "bob@example.net"
    message["Subject"] = "Meeting tomorrow"
    message["Date"] = "Mon, 23 Nov 2026 10:00:00 +0900"
    message["Message-ID"] = "<20261123100000.1234@mail.example.org>"
    message.set_content(body)
    return bytes(message)


def with_attachment(payload: bytes) -> bytes:
    """An ordinary message with ``payload`` attached as base64."""
    message = EmailMessage()
    message["From"] = "alice@example.org"
    message["To"] = "bob@example.net"
    message["Subject"] = "the file you asked for"
    message["Date"] = "Mon, 23 Nov 2026 10:00:00 +0900"
    message["Message-ID"] = "<attach.1@mail.example.org>"
    message.set_content("Attached.\n")
    message.add_attachment(
        payload, maintype="application", subtype="octet-stream", filename="tool.com"
    )
    return bytes(message)


def eicar_base64_attachment() -> bytes:
    data = with_attachment(EICAR)
    assert EICAR not in data  # really hidden by the encoding
    return data


def eicar_quoted_printable_attachment() -> bytes:
    """EICAR with every byte written as ``=XX`` (valid RFC 2045 §6.7 quoted-printable)."""
    encoded = "".join(f"={byte:02X}" for byte in EICAR)
    lines = [encoded[i : i + 72] + "=" for i in range(0, len(encoded), 72)]
    data = (
        "From: alice@example.org\r\n"
        "To: bob@example.net\r\n"
        "Subject: the file you asked for\r\n"
        "Date: Mon, 23 Nov 2026 10:00:00 +0900\r\n"
        "Message-ID: <attach.2@mail.example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b1"\r\n'
        "\r\n"
        "--b1\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "Attached.\r\n"
        "--b1\r\n"
        'Content-Type: text/plain; name="a.txt"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n"
        'Content-Disposition: attachment; filename="a.txt"\r\n'
        "\r\n" + "\r\n".join(lines) + "\r\n"
        "--b1--\r\n"
    ).encode("ascii")
    assert EICAR not in data  # really hidden by the encoding
    return data


def gtube_message() -> bytes:
    return ordinary_message(body="This is a test.\n" + GTUBE.decode("ascii") + "\n")
