"""Sample messages for the engine tests: ordinary mail, EICAR attachments, GTUBE."""

from __future__ import annotations

from email.message import EmailMessage

from tests.daemons import EICAR, GTUBE


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
