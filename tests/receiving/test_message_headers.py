"""The header view parses only the header block: it must see exactly the headers the
standard parser sees in the whole message, whatever the line endings or body."""

from __future__ import annotations

import email.policy
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser

from hypothesis import given, settings
from hypothesis import strategies as st

from mailplane.mail.message import decode_header_text, header_block

_WHOLE = BytesHeaderParser(policy=email.policy.compat32)

_line = st.one_of(
    st.builds(lambda n, v: f"{n}: {v}", st.sampled_from(["From", "Subject", "X-A", "To"]),
              st.text(alphabet="ab =?:<>@.", max_size=12)),
    st.builds(lambda v: f" {v}", st.text(alphabet="ab c", max_size=8)),  # a fold
    st.text(alphabet="ab:\t ", max_size=6),  # odd lines, empty ones included
)
_ending = st.sampled_from(["\r\n", "\n", "\r"])


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(_line, _ending), max_size=12))
def test_header_block_yields_the_headers_of_the_whole_message(
    lines: list[tuple[str, str]],
) -> None:
    raw = "".join(text + ending for text, ending in lines).encode() + b"body\r\n\r\nX-B: 1\r\n"
    assert (_WHOLE.parsebytes(header_block(raw)).items()
            == _WHOLE.parsebytes(raw).items())


def test_header_block_stops_after_the_blank_line() -> None:
    raw = b"Subject: hi\r\nFrom: a@b.test\r\n\r\n" + b"x" * 10_000
    assert len(header_block(raw)) <= len(b"Subject: hi\r\nFrom: a@b.test\r\n\r\n") + 1


@settings(max_examples=1500, deadline=None)
@given(st.one_of(
    st.text(max_size=30),
    st.binary(max_size=30).map(lambda b: b.decode("ascii", "surrogateescape")),
    st.sampled_from(["=?utf-8?b?5pel5pys?=", "=?iso-2022-jp?B?GyRCRnxLXDhsGyhC?= x",
                     "=?bogus?q?a?=", "a =?utf-8?q?b?= c", "=?"]),
))
def test_decoding_a_header_matches_the_standard_decoder(raw: str) -> None:
    try:
        expected = str(make_header(decode_header(raw)))
    except (ValueError, LookupError, UnicodeError):
        expected = raw
    assert decode_header_text(raw) == expected
