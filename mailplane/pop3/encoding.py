"""Streaming a stored message onto the POP3 wire (RFC 1939 §3, §7, §11).

Messages are sent chunk by chunk, never loaded whole: line endings become CRLF, a line that
starts with "." gets a second "." (byte-stuffing), and a message that does not end with a
line break gets one, so the terminating ``.CRLF`` always stands on a line of its own.
:func:`wire_size` counts exactly the octets this produces, stuffing aside, which is what
STAT and LIST report (RFC 1939 §5: sizes as the message will be sent).
"""

from __future__ import annotations

from pathlib import Path

CHUNK_SIZE = 64 * 1024


class WireEncoder:
    """Stateful CRLF normalisation and dot-stuffing over arbitrary chunk boundaries.

    With ``body_lines`` set it implements TOP (RFC 1939 §7): the header, the blank line
    that ends it, and at most that many body lines; :attr:`done` says when to stop reading.
    """

    def __init__(self, *, body_lines: int | None = None) -> None:
        self._at_line_start = True
        self._pending_cr = False
        self._in_header = True
        self._body_lines_left = body_lines
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        if self.done:
            return b""
        data = (b"\r" if self._pending_cr else b"") + chunk
        self._pending_cr = data.endswith(b"\r")
        if self._pending_cr:
            data = data[:-1]  # it may be the first half of a CRLF split between chunks
        parts = data.split(b"\n")
        out: list[bytes] = []
        last = len(parts) - 1
        for index, line in enumerate(parts):
            complete = index < last
            if complete and line.endswith(b"\r"):
                line = line[:-1]
            if self._at_line_start and line.startswith(b"."):
                out.append(b".")
            out.append(line)
            if not complete:
                if line:
                    self._at_line_start = False
                break
            out.append(b"\r\n")
            blank = self._at_line_start and not line
            self._at_line_start = True
            if self._count_line(blank):
                self.done = True
                self._pending_cr = False
                break
        return b"".join(out)

    def finish(self) -> bytes:
        """Close the last line if the message did not end with a line break."""
        if self.done:
            return b""
        tail = b"\r" if self._pending_cr else b""
        if self._pending_cr or not self._at_line_start:
            tail += b"\r\n"
        self._pending_cr = False
        self._at_line_start = True
        return tail

    def _count_line(self, blank: bool) -> bool:
        """Account one complete line for TOP; True once the requested lines are out."""
        if self._body_lines_left is None:
            return False
        if self._in_header:
            if blank:
                self._in_header = False
                return self._body_lines_left == 0
            return False
        self._body_lines_left -= 1
        return self._body_lines_left <= 0


def wire_size(path: Path) -> int:
    """Octets of the message as :class:`WireEncoder` sends it, without dot-stuffing.

    Blocking: run it in a thread.  Each bare LF grows by one octet (to CRLF); a missing final
    line break adds two.
    """
    total = 0
    bare_lf = 0
    previous = b""
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            total += len(chunk)
            bare_lf += chunk.count(b"\n") - chunk.count(b"\r\n")
            if chunk.startswith(b"\n") and previous == b"\r":
                bare_lf -= 1  # a CRLF split across two chunks
            previous = chunk[-1:]
    if total and previous != b"\n":
        total += 2
    return total + bare_lf
