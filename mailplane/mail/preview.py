"""A message as a person looks at it before receiving it: the quarantine view (SPEC §4, issue
22 finding 6).  Text as it reads, and HTML that cannot act.

**Text.**  A part's bytes are decoded from their transfer encoding (7bit, 8bit,
quoted-printable, base64) and then from their charset the way Japanese mail programs read
them: ``ISO-2022-JP`` as Microsoft's CP50221 when strict ISO-2022-JP fails (the NEC and IBM
rows — ①, ㈱, 髙 — that most Japanese mail software writes under that name), ``Shift_JIS``
as CP932, an undeclared body with ISO-2022-JP escapes as ISO-2022-JP.  Line ends become
``\\n`` whatever the message used (CRLF on the wire: the old preview split on ``\\n`` and
showed the ``\\r`` as ``?`` at the end of every line); other control characters become
``?``.  Header values are unfolded (RFC 5322 §2.2.3) for display, so a folded ``Received``
reads as one line.

**HTML** is shown, not obeyed.  It is sanitised with nh3 (the Rust ammonia sanitiser,
maintained, html5ever's parser — the same tree a browser builds): only a fixed set of
formatting tags survive, every ``on*`` attribute, ``style``, ``<script>``/``<style>``
content, form, frame, object, SVG and MathML goes.  Nothing in it can fetch: images are
replaced by their alt text in brackets (a remote image is a read receipt — a "web bug" — and
a request to the sender's server), links lose their target and show it as text after the
link text, so the customer can see where a link would have led without following it.  The
portal puts the result in an ``<iframe sandbox srcdoc>`` (no script runs, an opaque origin),
under the portal's own Content-Security-Policy, which a srcdoc document inherits — three
independent layers.
"""

from __future__ import annotations

import codecs
import email.policy
import html
import re
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.parser import BytesParser
from html.parser import HTMLParser

import nh3

from mailplane.mail.mime import MimeTooComplex, parse_email
from mailplane.mail.trace import header_safe

#: Characters of text shown (the customer judges a message, not reads a book).
TEXT_CHARS = 20_000
#: Characters of HTML sanitised; a longer part is cut first (html5ever closes what is open).
HTML_INPUT_CHARS = 300_000
#: Longest link target shown as text.
LINK_TEXT_CHARS = 200
#: Deepest nesting handed to the sanitiser: html5ever's tree builder scans the stack of open
#: elements for every tag, so its time grows with the square of the depth (50,000 nested
#: ``<div>`` took 19 s; 20,000 ``<b class=n>`` 28 s).  Browsers stop nesting too (Blink at
#: 512); real mail stays far below.
MAX_NESTING = 256

_TAGS = {
    "a", "abbr", "address", "b", "bdi", "bdo", "big", "blockquote", "br", "caption", "center",
    "cite", "code", "col", "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em", "figcaption",
    "figure", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li",
    "mark", "ol", "p", "pre", "q", "rp", "rt", "ruby", "s", "samp", "small", "span", "strike",
    "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "time", "tr", "tt",
    "u", "ul", "var", "wbr",
}
#: Removed with everything inside them (the rest of the unknown tags keep their text).
_CLEAN_CONTENT = {"script", "style", "title", "noscript", "template", "xmp", "noembed",
                  "noframes", "iframe", "object", "svg", "math", "head"}
_ATTRIBUTES = {
    "*": {"lang", "dir", "title"},
    "a": {"href"},
    "img": {"alt"},
    "td": {"colspan", "rowspan", "align", "valign"},
    "th": {"colspan", "rowspan", "align", "valign", "scope"},
    "table": {"summary"},
    "ol": {"start", "type"},
    "p": {"align"}, "div": {"align"},
}
_BLOCK = {"address", "blockquote", "br", "caption", "center", "dd", "div", "dl", "dt",
          "figure", "figcaption", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "li", "ol", "p",
          "pre", "table", "tr", "ul"}
_VOID = {"br", "col", "hr", "img", "wbr"}
_SPACES = re.compile(r"[ \t\r\n\f]+")
_BLANK_LINES = re.compile(r"\n{3,}")


@dataclass(frozen=True, slots=True)
class SafeHtml:
    """Sanitised HTML (a fragment for a sandboxed frame), its text, and what was held back."""

    html: str
    text: str
    images_hidden: int
    links_disarmed: int


@dataclass(frozen=True, slots=True)
class MessageView:
    headers: list[tuple[str, str]]
    #: The text part; for an HTML-only message, the text of the HTML; "" when neither.
    text: str
    html: SafeHtml | None


# --- text -------------------------------------------------------------------------------

_LINE_END = re.compile(r"\r\n|\r|\n")
_FOLD = re.compile(r"[ \t]*(?:\r\n|\r|\n)[ \t]*|\t")


def display_text(text: str, limit: int = TEXT_CHARS) -> str:
    """Body text for display: every line end as ``\\n`` (CRLF, CR or LF), tabs as a space,
    other control characters and undecodable bytes as ``?``."""
    lines = _LINE_END.split(text[:limit])
    return "\n".join(header_safe(line.replace("\t", " "), len(line)) for line in lines)


def display_header(text: str, limit: int = 998) -> str:
    """A header value for display: unfolded (a fold and its whitespace, or a tab, is one
    space), then header safe."""
    return header_safe(_FOLD.sub(" ", text), limit)


_JAPANESE_ALIASES = {
    "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932",
    "windows-31j": "cp932", "ms_kanji": "cp932", "csshiftjis": "cp932",
    "iso-2022-jp-ms": "iso-2022-jp", "cp50220": "iso-2022-jp", "cp50221": "iso-2022-jp",
    "cp50222": "iso-2022-jp", "csiso2022jp": "iso-2022-jp",
}


def decode_part(payload: bytes, charset: str | None) -> str:
    """A text part's bytes as text, the way Japanese mail programs read them (module
    docstring); bytes that fit no charset become U+FFFD, never an exception."""
    name = (charset or "").strip().strip('"').lower()
    name = _JAPANESE_ALIASES.get(name, name)
    if not name and b"\x1b$" in payload:
        name = "iso-2022-jp"
    if name == "iso-2022-jp":
        try:
            return payload.decode("iso2022_jp")
        except UnicodeDecodeError:
            return decode_cp50221(payload)
    if not name or name in ("us-ascii", "ascii", "unknown-8bit", "x-unknown"):
        for guess in ("utf-8", "cp932"):
            try:
                return payload.decode(guess)
            except UnicodeDecodeError:
                continue
        return payload.decode("utf-8", "replace")
    try:
        codecs.lookup(name)
    except LookupError:
        name = "utf-8"
    try:
        return payload.decode(name, "replace")
    except (LookupError, UnicodeError, ValueError):  # a codec that cannot decode at all
        return payload.decode("utf-8", "replace")


_ESCAPE = re.compile(rb"\x1b(\(B|\(J|\(I|\$@|\$B|\$\(D|\$\(O|\$\(Q|\$\(P|&@\x1b\$B)")


def decode_cp50221(payload: bytes) -> str:
    """ISO-2022-JP read as Windows does (CP50221): JIS X 0208 pairs with the NEC row 13 and
    IBM extensions, mapped through Shift_JIS to CP932; ``ESC ( I`` half-width katakana; an
    unknown set or a broken pair becomes U+FFFD."""
    out: list[str] = []
    mode = b"(B"
    position = 0
    for match in _ESCAPE.finditer(payload):
        out.append(_decode_run(payload[position:match.start()], mode))
        mode = match.group(1)[-2:]
        position = match.end()
    out.append(_decode_run(payload[position:], mode))
    return "".join(out)


def _decode_run(run: bytes, mode: bytes) -> str:
    if mode in (b"(B", b"(J"):
        return run.decode("ascii", "replace")
    if mode == b"(I":
        return bytes(b | 0x80 if 0x21 <= b <= 0x5F else b for b in run).decode("cp932", "replace")
    if mode not in (b"$@", b"$B"):
        return "\ufffd" * (len(run) // 2)
    text: list[str] = []
    index = 0
    while index < len(run):
        first = run[index]
        if first in (0x0A, 0x0D):  # a line end inside a run (broken, but seen)
            text.append(chr(first))
            index += 1
            continue
        if index + 1 >= len(run):
            text.append("\ufffd")
            break
        text.append(_jis_pair(first, run[index + 1]))
        index += 2
    return "".join(text)


def _jis_pair(first: int, second: int) -> str:
    """One JIS X 0208 (plus NEC/IBM rows) character through its Shift_JIS bytes."""
    if not (0x21 <= first <= 0x7E and 0x21 <= second <= 0x7E):
        return "\ufffd"
    row = first - 0x21
    lead = (row >> 1) + (0x81 if row < 62 else 0xC1)
    trail = second + (0x1F if second < 0x60 else 0x20) if row % 2 == 0 else second + 0x7E
    return bytes((lead, trail)).decode("cp932", "replace")


def _part_text(part: Message, max_chars: int) -> str:
    """The part's text, at most about ``max_chars``: its bytes are cut at a line end first
    (a 25 MB part is not decoded whole to show its beginning, and no character is split)."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    limit = max_chars * 4  # the widest encodings use 4 bytes a character
    if len(payload) > limit:
        cut = payload.rfind(b"\n", 0, limit)
        payload = payload[:cut + 1 if cut > 0 else limit]
    return decode_part(payload, part.get_content_charset())


# --- HTML -------------------------------------------------------------------------------


_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)[^>]*>")
#: Elements that never nest in the tree (void), or that the parser closes when the next
#: one of their kind opens (``<p>``, ``<li>``, table cells): they add no depth.
_FLAT = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
         "source", "track", "wbr", "p", "li", "dt", "dd", "td", "th", "tr", "tbody",
         "thead", "tfoot", "colgroup", "option", "optgroup", "rb", "rt", "rp", "rtc"}


def flatten_deep(markup: str, limit: int = MAX_NESTING) -> str:
    """``markup`` with the tags that would nest deeper than ``limit`` left out (their text
    kept), in one linear pass — so the sanitiser's work stays linear.  The count is
    conservative (every non-void tag opens until it is closed); what is left is still
    sanitised, so a tag formed by the removal gains nothing."""
    depth = 0
    kept: list[str] = []
    position = 0
    for match in _TAG.finditer(markup):
        name = match.group(2).lower()
        if name in _FLAT or match.group(0).endswith("/>"):
            continue
        closing = bool(match.group(1))
        drop = depth > limit if closing else depth >= limit
        depth = max(0, depth - 1) if closing else depth + 1
        if drop:
            kept.append(markup[position:match.start()])
            position = match.end()
    kept.append(markup[position:])
    return "".join(kept)


def sanitise_html(markup: str) -> SafeHtml:
    """Sanitised HTML with images as their alt text and links as text (module docstring)."""
    clean = nh3.clean(
        flatten_deep(markup[:HTML_INPUT_CHARS]), tags=_TAGS, clean_content_tags=_CLEAN_CONTENT,
        attributes=_ATTRIBUTES, url_schemes={"http", "https", "mailto"}, link_rel=None,
        strip_comments=True,
    )
    rewriter = _Disarm()
    rewriter.feed(clean)
    rewriter.close()
    return SafeHtml(html="".join(rewriter.html), text=display_text(rewriter.plain_text()),
                    images_hidden=rewriter.images, links_disarmed=rewriter.links)


def _shown_target(target: str) -> str:
    target = header_safe(target.strip(), LINK_TEXT_CHARS + 1)
    return target if len(target) <= LINK_TEXT_CHARS else target[:LINK_TEXT_CHARS - 1] + "…"


class _Disarm(HTMLParser):
    """Re-serialises nh3's output (well-formed, escaped) with every ``<img>`` turned into
    ``[alt]`` and every ``<a href>`` into its text followed by ``(target)``; collects the
    plain text on the way (line breaks at block elements)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.html: list[str] = []
        self.text: list[str] = []
        self.images = 0
        self.links = 0
        self._links: list[tuple[str, int]] = []  # (target, where its text starts)
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "img":
            self.images += 1
            alt = values.get("alt", "").strip()
            if alt:
                self.handle_data(f"[{alt}]")
            return
        if tag == "a":
            target = values.pop("href", "")
            self._links.append((target, len(self.text)))
            if target:
                self.links += 1
        kept = "".join(f' {name}="{html.escape(value, quote=True)}"'
                       for name, value in values.items() if name != "href")
        self.html.append(f"<{tag}{kept}>")
        if tag == "pre":
            self._pre += 1
        if tag in _BLOCK:
            self.text.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        self.html.append(f"</{tag}>")
        if tag == "pre":
            self._pre = max(0, self._pre - 1)
        if tag == "a" and self._links:
            target, start = self._links.pop()
            label = "".join(self.text[start:]).strip()
            bare = re.sub(r"^(?:https?://|mailto:)", "", target).rstrip("/")
            if target and label not in (target, bare, target.rstrip("/")):
                self.handle_data(f" ({_shown_target(target)})")
        if tag in _BLOCK:
            self.text.append("\n")

    def handle_data(self, data: str) -> None:
        self.html.append(html.escape(data, quote=False))
        self.text.append(data if self._pre else _SPACES.sub(" ", data))

    def plain_text(self) -> str:
        """The text as it reads: at most one blank line between blocks."""
        text = "".join(self.text)
        text = "\n".join(line.strip(" ") for line in text.split("\n"))
        return _BLANK_LINES.sub("\n\n", text).strip("\n")


# --- the whole message ------------------------------------------------------------------


def _body_part(message: EmailMessage, subtype: str) -> Message | None:
    try:
        return message.get_body(preferencelist=(subtype,))
    except (KeyError, ValueError, AttributeError, TypeError, IndexError):
        return None


def message_view(raw: bytes) -> MessageView:
    """Headers, text and sanitised HTML of ``raw``; a message beyond the MIME bounds or
    too broken to walk still gets its headers (the API's ``raw`` shows the rest)."""
    parsed = BytesParser(policy=email.policy.default).parsebytes(raw, headersonly=True)
    headers = [(header_safe(name, 200), _header_value(value)) for name, value in parsed.items()]
    try:
        message = parse_email(raw)
    except (MimeTooComplex, ValueError, LookupError, UnicodeError, AssertionError):
        return MessageView(headers, "", None)
    plain = _body_part(message, "plain")
    markup = _body_part(message, "html")
    safe = sanitise_html(_part_text(markup, HTML_INPUT_CHARS)) if markup is not None else None
    if plain is not None:
        text = display_text(_part_text(plain, TEXT_CHARS))
    else:
        text = safe.text if safe is not None else ""
    return MessageView(headers, text, safe)


def _header_value(value: object) -> str:
    """A header value decoded by the parser, for display; "" if it cannot be decoded."""
    try:
        text = str(value)
    except (ValueError, LookupError, UnicodeError, IndexError, AttributeError):
        text = ""
    return display_header(text)
