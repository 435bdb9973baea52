"""The TRANSACTION and UPDATE states of a POP3 session (RFC 1939 §5-§6): STAT, LIST, UIDL,
RETR, TOP, DELE, RSET, NOOP and QUIT, over the locked mailbox.

Deletions marked with DELE are applied only at QUIT, so a dropped connection deletes
nothing; a message is streamed chunk by chunk, dot-stuffed, whatever its size.  Message
numbers are ASCII digits only (a Unicode digit such as ``²`` is not a number: ``-ERR`` and
the session goes on).  :class:`~mailplane.pop3.session.Pop3Session` mixes these in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import BinaryIO

from mailplane.pop3.encoding import CHUNK_SIZE, WireEncoder
from mailplane.pop3.mailbox import Mailbox, StoredMessage


def ascii_number(text: str) -> int | None:
    """``text`` as a number if it is ASCII digits only (``int("²")`` would raise)."""
    return int(text) if text.isascii() and text.isdigit() else None


class MaildropCommands:
    """TRANSACTION-state commands; the session provides the connection and the state."""

    _mailbox: Mailbox | None
    _deleted: set[int]
    _done: bool
    _writer: asyncio.StreamWriter

    async def _send(self, line: str) -> None:
        raise NotImplementedError

    async def _send_multiline(self, first: str, lines: list[str]) -> None:
        raise NotImplementedError

    def _totals(self) -> tuple[int, int]:
        live = [m for i, m in enumerate(self._messages(), 1) if i not in self._deleted]
        return len(live), sum(m.size for m in live)

    def _messages(self) -> list[StoredMessage]:
        return self._mailbox.messages if self._mailbox else []

    async def _message_number(self, argument: str) -> int | None:
        number = ascii_number(argument.strip()) or 0
        if not 1 <= number <= len(self._messages()):
            await self._send("-ERR no such message")
            return None
        if number in self._deleted:
            await self._send(f"-ERR message {number} already deleted")
            return None
        return number

    async def _stat(self, _argument: str) -> None:
        count, octets = self._totals()
        await self._send(f"+OK {count} {octets}")

    async def _list(self, argument: str) -> None:
        await self._listing(argument, lambda m: str(m.size), "scan listing")

    async def _uidl(self, argument: str) -> None:
        await self._listing(argument, lambda m: m.uid, "unique-id listing")

    async def _listing(
        self, argument: str, column: Callable[[StoredMessage], str], title: str
    ) -> None:
        if argument.strip():
            number = await self._message_number(argument)
            if number is not None:
                await self._send(f"+OK {number} {column(self._messages()[number - 1])}")
            return
        lines = [
            f"{i} {column(m)}"
            for i, m in enumerate(self._messages(), 1)
            if i not in self._deleted
        ]
        await self._send_multiline(f"+OK {title} follows", lines)

    async def _retr(self, argument: str) -> None:
        number = await self._message_number(argument)
        if number is not None:
            message = self._messages()[number - 1]
            await self._stream(message, WireEncoder(), f"+OK {message.size} octets")

    async def _top(self, argument: str) -> None:
        number_text, _, lines_text = argument.strip().partition(" ")
        body_lines = ascii_number(lines_text.strip())
        if body_lines is None:
            await self._send("-ERR usage: TOP message lines")
            return
        number = await self._message_number(number_text)
        if number is not None:
            encoder = WireEncoder(body_lines=body_lines)
            await self._stream(self._messages()[number - 1], encoder, "+OK top of message")

    async def _stream(self, message: StoredMessage, encoder: WireEncoder, first: str) -> None:
        """Send the message chunk by chunk; memory stays at one chunk whatever its size."""
        try:
            handle = await asyncio.to_thread(self._open_message, message)
        except FileNotFoundError:
            await self._send("-ERR message is no longer available")
            return
        except OSError:
            await self._send("-ERR [SYS/TEMP] cannot read message")
            return
        try:
            await self._send(first)
            while not encoder.done:
                chunk = await asyncio.to_thread(handle.read, CHUNK_SIZE)
                if not chunk:
                    break
                self._writer.write(encoder.feed(chunk))
                await self._writer.drain()
            self._writer.write(encoder.finish() + b".\r\n")
            await self._writer.drain()
        finally:
            await asyncio.to_thread(handle.close)

    def _open_message(self, message: StoredMessage) -> BinaryIO:
        """Open the message where it is now (an IMAP client may have renamed it since the
        listing; blocking)."""
        for _ in range(3):
            path = self._mailbox.locate(message) if self._mailbox else None
            if path is None:
                break
            try:
                return open(path, "rb")
            except FileNotFoundError:
                continue
        raise FileNotFoundError(str(message.path))

    async def _dele(self, argument: str) -> None:
        number = await self._message_number(argument)
        if number is not None:
            self._deleted.add(number)
            await self._send(f"+OK message {number} deleted")

    async def _rset(self, _argument: str) -> None:
        self._deleted.clear()
        count, octets = self._totals()
        await self._send(f"+OK maildrop has {count} messages ({octets} octets)")

    async def _noop(self, _argument: str) -> None:
        await self._send("+OK")

    async def _quit(self, _argument: str) -> None:
        self._done = True
        mailbox = self._mailbox
        if mailbox is None or not self._deleted:
            await self._send("+OK bye")
            return
        # UPDATE state (RFC 1939 §6): only now are the marked messages removed.
        doomed = [m for i, m in enumerate(mailbox.messages, 1) if i in self._deleted]
        try:
            failed = await asyncio.to_thread(mailbox.delete, doomed)
        except OSError:
            failed = len(doomed)
        if failed:
            await self._send("-ERR [SYS/TEMP] some deleted messages not removed")
        else:
            await self._send("+OK bye")

    async def _release_mailbox(self) -> None:
        mailbox, self._mailbox = self._mailbox, None
        if mailbox is not None:
            await asyncio.to_thread(mailbox.close)
