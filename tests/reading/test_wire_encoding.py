"""Unit tests of the streaming POP3 encoder: CRLF, dot-stuffing, TOP, any chunk boundary."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mailplane.pop3.encoding import WireEncoder, wire_size


def reference(data: bytes, *, stuff: bool = True) -> bytes:
    """Line by line, the obvious way: what the encoder must produce for a whole message."""
    if not data:
        return b""
    lines = data.split(b"\n")
    ends_with_newline = lines[-1] == b""
    if ends_with_newline:
        lines = lines[:-1]
    out = []
    for index, line in enumerate(lines):
        if line.endswith(b"\r") and (index < len(lines) - 1 or ends_with_newline):
            line = line[:-1]
        out.append((b"." + line if stuff and line.startswith(b".") else line) + b"\r\n")
    return b"".join(out)


def encode(data: bytes, cuts: list[int], **kwargs: int) -> bytes:
    encoder = WireEncoder(**kwargs)
    out, start = [], 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        out.append(encoder.feed(data[start:cut]))
        start = cut
    out.append(encoder.finish())
    return b"".join(out)


message_bytes = st.lists(
    st.sampled_from([b"a", b".", b"\n", b"\r", b"\r\n", b"..", b"x y"]), max_size=40
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(data=message_bytes, cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6))
def test_encoder_matches_reference_for_any_chunking(data: bytes, cuts: list[int]) -> None:
    assert encode(data, cuts) == reference(data)


@settings(max_examples=100, deadline=None)
@given(data=message_bytes)
def test_wire_size_counts_the_unstuffed_octets_sent(data: bytes) -> None:
    with tempfile.NamedTemporaryFile() as handle:
        handle.write(data)
        handle.flush()
        assert wire_size(Path(handle.name)) == len(reference(data, stuff=False))


def test_top_stops_after_the_requested_body_lines() -> None:
    data = b"A: 1\nB: 2\n\n.one\ntwo\nthree\n"
    assert encode(data, [3, 12], body_lines=0) == b"A: 1\r\nB: 2\r\n\r\n"
    assert encode(data, [3, 12], body_lines=2) == b"A: 1\r\nB: 2\r\n\r\n..one\r\ntwo\r\n"
    assert encode(data, [], body_lines=10) == reference(data)


def test_crlf_split_across_chunks_is_not_doubled() -> None:
    assert encode(b"ab\r\ncd\r\n", [3, 7]) == b"ab\r\ncd\r\n"


def test_wire_size_handles_a_crlf_split_across_read_chunks(tmp_path: Path) -> None:
    from mailplane.pop3.encoding import CHUNK_SIZE

    data = b"a" * (CHUNK_SIZE - 1) + b"\r\n" + b"b\n" + b"c"
    path = tmp_path / "message"
    path.write_bytes(data)
    assert wire_size(path) == len(reference(data, stuff=False)) == len(data) + 1 + 2
