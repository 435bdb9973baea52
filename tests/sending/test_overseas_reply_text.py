"""The overseas refusal is plain English (issue 16: no romaji), ASCII like every SMTP reply,
and tells the user how to lift it."""

from mailplane.smtp.replies import OVERSEAS_SEND_REFUSED


def test_the_overseas_refusal_is_plain_ascii_english_with_the_way_out() -> None:
    text = OVERSEAS_SEND_REFUSED.text
    assert text.isascii()
    assert "kaigai" not in text and "meru" not in text and "soshin" not in text
    assert "My Page" in text and "7 days" in text and "turn ON overseas sending" in text
    # A mailbox user cannot switch it (004): the reply says who can (issue 22).
    assert "the contract holder" in text
