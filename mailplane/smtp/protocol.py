"""aiosmtpd 1.4.6's ``SMTP`` with the two per-message costs of DESIGN "Keeping the SMTP path
fast" removed, and nothing else changed.  (Over 300 lines because it mirrors aiosmtpd's
own DATA and dispatch code closely enough to be compared with it line by line.)

1. Per connection, ``SMTP.__init__`` introspects itself and the handler
   (``inspect.getmembers``, ``dir``, ``inspect.signature``) and logs the AUTH mechanisms.
   :class:`FastSMTP` computes those tables once per (protocol class, handler class) and only
   binds them per connection.
2. DATA is read with one ``readuntil(b"\\r\\n")`` (and a debug-log call) per line.
   :class:`FastSMTP` takes every complete line already buffered in one slice and checks
   them in bulk.  The outcome is byte-for-byte the stock one (RFC 5321 §4.5.2
   dot-unstuffing, the ``<CRLF>.<CRLF>`` terminator, §4.5.3.1.6 line length → ``500``,
   the size limit → ``552``, first error wins, nothing read past the terminator): lines are
   still split only at CRLF, so a bare CR or LF never ends the message and reaches the
   handler, which refuses it (RFC 5321 §2.3.8, see :mod:`mailplane.smtp.mx`).  Any chunk
   holding a line longer than the limit, or crossing the size limit, is checked line by
   line with the stock rules; a line still growing past the limit hands the rest of DATA
   to the stock line-by-line loop.

   With :attr:`FastSMTP.normalise_bare_lf` (the MX, like Postfix 3.9's default
   ``smtpd_forbid_bare_newline = normalize``) a bare LF also ends a line — for the line
   length and for dot-unstuffing — and becomes CRLF in the message; DATA still ends only
   at ``.<CRLF>`` after a CRLF-ended line, so ``<LF>.<CRLF>`` or ``<LF>.<LF>`` never
   splits off a second message (SMTP smuggling).  A bare CR is kept for the handler to
   refuse.

3. ``MAIL FROM``/``RCPT TO`` addresses go through ``email._header_value_parser`` (~9 % of
   MX CPU with two workers).  The plain ``<dot-atom@domain>`` form nearly all mail uses
   is matched by one regular expression whose result is the parser's; anything else
   (quoted local parts, routes, comments, the null path, leading blanks) still takes the
   stock parser.

Only aiosmtpd 1.4.6 is known to match: with any other version the class is the stock one.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import ssl
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import aiosmtpd
import aiosmtpd.smtp
from aiosmtpd.smtp import (
    MISSING,
    SMTP,
    _AuthMechAttr,
    _DataState,
    login_always_fail,
    syntax,
)

log = logging.getLogger("mail.log")

_COMPATIBLE = aiosmtpd.__version__ == "1.4.6"


def protocol_description() -> str:
    """Which protocol code this process runs, for the start-up log line (the fast paths
    exist only on the aiosmtpd version they were checked against)."""
    if _COMPATIBLE:
        return f"FastSMTP (fast paths on aiosmtpd {aiosmtpd.__version__})"
    return f"stock aiosmtpd {aiosmtpd.__version__} SMTP (FastSMTP needs 1.4.6)"
_CRLF = b"\r\n"
_LF = b"\n"
_CR = b"\r"
_TERMINATOR = b"\r\n.\r\n"
_BARE_LF = re.compile(rb"(?<!\r)\n")
#: ``<local@domain>`` then the parameters: RFC 5322 dot-atom local part, LDH domain labels
#: — the subset on which ``get_angle_addr(...).addr_spec`` is the text between the brackets
#: (a test compares both on generated input).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>")


def _server_side_tls(context: ssl.SSLContext | None) -> bool:
    """No context, or one stock ``__init__`` would accept without a warning (it checks
    only that a server context does not demand client certificates or host names)."""
    return context is None or (
        context.verify_mode in (ssl.CERT_NONE, ssl.CERT_OPTIONAL)
        and not context.check_hostname)


class _Tables(NamedTuple):
    auth: tuple[tuple[str, str, bool], ...]  # (mechanism, attribute, on the protocol)
    hooks: tuple[tuple[str, str], ...]  # (command, handler attribute)
    ehlo_hook_ver: str | None
    smtp: dict[str, str]  # command -> protocol attribute


class _CommandTable(Mapping[str, Any]):
    """``_smtp_methods`` (command → the coroutine method aiosmtpd awaits), bound when a
    command is dispatched, not for every command at every connection: a client speaks
    five or six of the twenty commands.  :meth:`FastSMTP.command_method` is the hook a
    subclass wraps commands with."""

    __slots__ = ("_names", "_session")

    def __init__(self, session: FastSMTP, names: dict[str, str]) -> None:
        self._session = session
        self._names = names

    def __getitem__(self, command: str) -> Any:
        return self._session.command_method(command, getattr(self._session,
                                                             self._names[command]))

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


_TABLES: dict[tuple[type[Any], type[Any]], _Tables] = {}


def _tables(protocol: type[Any], handler: Any) -> _Tables:
    """What stock ``SMTP.__init__`` finds by introspection, by attribute name, once per
    (protocol class, handler class).  Hooks set on a handler *instance* are not cached."""
    key = (protocol, type(handler))
    per_instance = any(name.startswith(("handle_", "auth_"))
                       for name in getattr(handler, "__dict__", {}))
    cached = None if per_instance else _TABLES.get(key)
    if cached is not None:
        return cached
    auth = tuple(
        (getattr(member, "__auth_mechanism_name__",
                 name.replace("auth_", "").replace("__", "-")), name, obj is protocol)
        for obj in (protocol, handler)
        for name, member in inspect.getmembers(obj)
        if name.startswith("auth_")
    )
    hooks = tuple((name.replace("handle_", ""), name) for name in dir(handler)
                  if name.startswith("handle_"))
    ehlo_hook_ver = None
    ehlo = getattr(handler, "handle_EHLO", None)
    if ehlo is not None:
        params = len(inspect.signature(ehlo).parameters)
        if params not in (4, 5):
            raise RuntimeError("Unsupported EHLO Hook")
        ehlo_hook_ver = "old" if params == 4 else "new"
    smtp = {name.replace("smtp_", ""): name for name in dir(protocol)
            if name.startswith("smtp_")}
    tables = _Tables(auth, hooks, ehlo_hook_ver, smtp)
    if not per_instance:
        _TABLES[key] = tables
    return tables


class _DataReader(asyncio.StreamReader):
    """A StreamReader that can hand over every complete buffered line in one slice.

    It uses the same internals as ``StreamReader.read``/``readuntil`` (``_buffer``,
    ``_wait_for_data``, ``_maybe_resume_transport``) of CPython 3.11's asyncio.streams.
    """

    async def read_data_lines(self, line_limit: int, *, eol: bytes = _CRLF,
                              line_start: bool = True) -> tuple[bytes, bool] | None:
        """Complete DATA lines (each ending in ``eol``) and whether the end-of-data line
        followed them (consumed, never anything after it); ``None`` when a line longer
        than ``line_limit`` is still arriving (the caller reads on line by line).

        The end of data is ``.<CRLF>`` after a CRLF-ended line: with ``eol=b"\\n"`` the
        caller says (``line_start``) whether the lines it already took ended in CRLF."""
        stream: Any = self  # asyncio.streams internals are untyped
        while True:
            buffer: bytearray = stream._buffer
            if line_start and buffer.startswith(b".\r\n"):
                del buffer[:3]
                stream._maybe_resume_transport()
                return b"", True
            end = buffer.find(_TERMINATOR)
            if end != -1:
                data = bytes(buffer[:end + 2])
                del buffer[:end + 5]
                stream._maybe_resume_transport()
                return data, True
            last = buffer.rfind(eol)
            if last != -1:
                data = bytes(buffer[:last + len(eol)])
                del buffer[:last + len(eol)]
                stream._maybe_resume_transport()
                return data, False
            # No line end: stock readuntil overruns once the partial line is longer than
            # ``limit`` bytes plus a possible trailing CR.
            if len(buffer) > line_limit + 1:
                return None
            if stream._exception is not None:
                raise stream._exception
            if stream._eof:
                raise asyncio.IncompleteReadError(bytes(buffer), None)
            await stream._wait_for_data("read_data_lines")


class _DataProgress:
    """Stock DATA bookkeeping: bytes counted, error state, kept lines."""

    __slots__ = ("num_bytes", "pieces", "state")

    def __init__(self) -> None:
        self.num_bytes = 0
        self.state = _DataState.NOMINAL
        self.pieces: list[bytes] = []

    def fail(self, state: _DataState) -> None:
        self.state = state
        self.pieces = []  # discard at once, like stock ``data *= 0``


class FastSMTP(SMTP):
    """Drop-in ``aiosmtpd.smtp.SMTP`` (see the module docstring)."""

    #: Set per connection by a listener that accepts bare LF (the MX), see above.
    normalise_bare_lf = False
    #: True while the DATA hook runs if the content it gets has CRLF line endings only
    #: (no bare CR or LF): counted here once, so the handler need not count again — three
    #: passes over the message that were a tenth of the MX's CPU at 100 KB.
    content_crlf_only = False

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        if not _COMPATIBLE:
            super().__init__(handler, **kwargs)
            return
        self._fast_init(handler, **kwargs)

    # A line-for-line copy of aiosmtpd 1.4.6 SMTP.__init__, minus the introspection and
    # the per-connection INFO log of AUTH mechanisms; a test checks both give equal vars().
    def _fast_init(
        self,
        handler: Any,
        *,
        data_size_limit: int | None = 33554432,
        enable_SMTPUTF8: bool = False,
        decode_data: bool = False,
        hostname: str | None = None,
        ident: str | None = None,
        tls_context: Any = None,
        require_starttls: bool = False,
        timeout: float = 300,
        auth_required: bool = False,
        auth_require_tls: bool = True,
        auth_exclude_mechanism: Any = None,
        auth_callback: Any = None,
        command_call_limit: Any = None,
        authenticator: Any = None,
        proxy_protocol_timeout: float | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if (not _server_side_tls(tls_context) or command_call_limit is not None
                or proxy_protocol_timeout is not None or not hostname
                or (auth_required and not auth_require_tls)):
            # Rare options keep the stock constructor (its checks and warnings).
            SMTP.__init__(
                self, handler, data_size_limit=data_size_limit,
                enable_SMTPUTF8=enable_SMTPUTF8, decode_data=decode_data, hostname=hostname,
                ident=ident, tls_context=tls_context, require_starttls=require_starttls,
                timeout=timeout, auth_required=auth_required,
                auth_require_tls=auth_require_tls,
                auth_exclude_mechanism=auth_exclude_mechanism, auth_callback=auth_callback,
                command_call_limit=command_call_limit, authenticator=authenticator,
                proxy_protocol_timeout=proxy_protocol_timeout, loop=loop,
            )
            return  # stock reader: smtp_DATA reads line by line
        self.__ident__ = ident or aiosmtpd.smtp.__ident__
        self.loop = loop if loop else aiosmtpd.smtp.make_loop()
        asyncio.StreamReaderProtocol.__init__(
            self, _DataReader(loop=self.loop, limit=self.line_length_limit),
            client_connected_cb=self._cb_client_connected, loop=self.loop)
        self.event_handler = handler
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = enable_SMTPUTF8
        self._decode_data = decode_data
        self.command_size_limits.clear()
        self.hostname = hostname
        self.tls_context = tls_context
        self.require_starttls = tls_context and require_starttls
        self._timeout_duration = timeout
        self._timeout_handle = None
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        self._auth_require_tls = auth_require_tls
        self._proxy_timeout = None
        self._authenticator = authenticator
        self._auth_callback = None if authenticator is not None else (
            auth_callback or login_always_fail)
        self._auth_required = auth_required
        tables = _tables(type(self), handler)
        self._auth_methods = {
            mechanism: _AuthMechAttr(getattr(self if own else handler, name), own)
            for mechanism, name, own in tables.auth
        }
        for mechanism in auth_exclude_mechanism or []:
            self._auth_methods.pop(mechanism, None)
        self._handle_hooks = {command: getattr(handler, name) for command, name in tables.hooks}
        self._ehlo_hook_ver = tables.ehlo_hook_ver
        # aiosmtpd declares a dict; it only ever calls .get(), .items() and [] on it.
        self._smtp_methods = _CommandTable(self, tables.smtp)  # type: ignore[assignment]
        self._enforce_call_limit = False

    def command_method(self, command: str, method: Any) -> Any:
        """The method aiosmtpd awaits for ``command`` (a subclass may wrap it)."""
        return method

    # --- DATA ----------------------------------------------------------------------------

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        reader = self._reader
        if not _COMPATIBLE or not isinstance(reader, _DataReader):
            await super().smtp_DATA(arg)
            return
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        acc = _DataProgress()
        bare_lf = self.normalise_bare_lf
        line_start = True
        try:
            while True:
                chunk = await reader.read_data_lines(
                    self.line_length_limit, eol=_LF if bare_lf else _CRLF,
                    line_start=line_start)
                if chunk is None:
                    await self._data_line_by_line(acc)
                    break
                lines, ended = chunk
                if lines:
                    if bare_lf:
                        self._take_lf_lines(acc, lines)
                        line_start = lines.endswith(_CRLF)
                    else:
                        self._take_lines(acc, lines)
                if ended:
                    break
        except asyncio.CancelledError:
            log.info("Connection lost during DATA")  # mail.log: WARNING and up only
            self._writer.close()
            raise
        await self._finish_data(acc)

    def _take_lines(self, acc: _DataProgress, lines: bytes) -> None:
        """Account complete lines exactly as the stock loop would, one slice at a time."""
        limit = self.data_size_limit
        line_limit = self.line_length_limit
        if acc.state is not _DataState.NOMINAL:
            acc.num_bytes += len(lines)
            return
        split = lines.split(_CRLF)
        fits = not limit or acc.num_bytes + len(lines) <= limit
        if fits and max(map(len, split)) + 2 <= line_limit:
            acc.num_bytes += len(lines)
            acc.pieces.append(lines)
            return
        kept: list[bytes] = []
        for content in split[:-1]:  # the slice ends with CRLF: last item is b""
            size = len(content) + 2
            if len(content) > line_limit:  # stock: readuntil overruns
                if acc.state is _DataState.NOMINAL:
                    acc.fail(_DataState.TOO_LONG)
                acc.num_bytes += size
                continue
            acc.num_bytes += size
            if acc.state is _DataState.NOMINAL and limit and acc.num_bytes > limit:
                acc.fail(_DataState.TOO_MUCH)
            if acc.state is _DataState.NOMINAL:
                if size > line_limit:
                    acc.fail(_DataState.TOO_LONG)
                else:
                    kept.append(content + _CRLF)
        if acc.state is _DataState.NOMINAL:
            acc.pieces.append(b"".join(kept))

    def _take_lf_lines(self, acc: _DataProgress, lines: bytes) -> None:
        """Account lines ending in CRLF or a bare LF: each counts with the CRLF it will
        have once normalised; the first limit broken wins."""
        acc.num_bytes += len(lines)
        if acc.state is not _DataState.NOMINAL:
            return
        limit = self.data_size_limit
        if limit and acc.num_bytes > limit:
            acc.fail(_DataState.TOO_MUCH)
            return
        split = lines.split(_LF)
        # ``map(len)`` runs in C; it counts a CRLF line's CR as content, so it can only
        # overstate: the exact per-line measure (a Python loop, an eighth of the MX's CPU
        # at 100 KB) runs only when the cheap one is over the limit.
        if max(map(len, split)) + 2 <= self.line_length_limit:
            acc.pieces.append(lines)
            return
        longest = max(len(line.removesuffix(b"\r")) for line in split[:-1])
        if longest + 2 > self.line_length_limit:
            acc.fail(_DataState.TOO_LONG)
            return
        acc.pieces.append(lines)

    async def _data_line_by_line(self, acc: _DataProgress) -> None:
        """The stock aiosmtpd 1.4.6 DATA loop, continuing from ``acc``."""
        limit = self.data_size_limit
        line_fragments: list[bytes] = []
        while self.transport is not None:
            try:
                line = await self._reader.readuntil(_CRLF)
            except asyncio.LimitOverrunError as exc:
                if acc.state is _DataState.NOMINAL:
                    acc.fail(_DataState.TOO_LONG)
                line = await self._reader.read(exc.consumed)
            if not line_fragments and line == b".\r\n":
                return
            acc.num_bytes += len(line)
            if acc.state is _DataState.NOMINAL and limit and acc.num_bytes > limit:
                acc.fail(_DataState.TOO_MUCH)
            line_fragments.append(line)
            if line.endswith(_CRLF):
                if acc.state is _DataState.NOMINAL:
                    whole = b"".join(line_fragments)
                    if len(whole) > self.line_length_limit:
                        acc.fail(_DataState.TOO_LONG)
                    else:
                        acc.pieces.append(whole)
                line_fragments = []

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        match = _PLAIN_PATH.match(arg) if _COMPATIBLE else None
        if match is None:
            return super()._getaddr(arg)
        rest = arg[match.end():].lstrip(" \t")  # the parser eats trailing CFWS ...
        if rest.startswith("("):  # ... comments included: leave those to it
            return super()._getaddr(arg)
        if self.local_part_limit and len(match[1]) > self.local_part_limit:
            return None, None
        return f"{match[1]}@{match[2]}", rest

    def _post_data(self) -> None:
        stock: Any = self  # untyped in aiosmtpd
        stock._set_post_data_state()

    async def _finish_data(self, acc: _DataProgress) -> None:
        """The stock tail of ``smtp_DATA``: errors, unstuffing, the handler, the reply."""
        assert self.envelope is not None
        if acc.state is not _DataState.NOMINAL:
            if acc.state is _DataState.TOO_LONG:
                await self.push("500 Line too long (see RFC5321 4.5.3.1.6)")
            else:
                await self.push("552 Error: Too much mail data")
            self._post_data()
            return
        body = b"".join(acc.pieces)
        acc.pieces = []
        # Counts find a bare LF ten times faster than the substitution passes a clean
        # message (12 vs 100 µs at 10 KB), and nearly all mail is clean.  Each CRLF holds
        # one CR and one LF, so the rest of each count are the bare ones; a substitution
        # only puts a CR before each bare LF, leaving the bare CRs as they were.
        lf, crlf, cr = body.count(_LF), body.count(_CRLF), body.count(_CR)
        if self.normalise_bare_lf and lf != crlf:
            body = _BARE_LF.sub(_CRLF, body)
            lf = crlf
        crlf_only = lf == crlf == cr
        # RFC 5321 §4.5.2: drop the first character of every line that starts with ".".
        if body.startswith(b"."):
            body = body[1:]
        original_content = body.replace(b"\r\n.", _CRLF)
        content: str | bytes
        if self._decode_data:
            if self.enable_SMTPUTF8:
                content = original_content.decode("utf-8", errors="surrogateescape")
            else:
                try:
                    content = original_content.decode("ascii", errors="strict")
                except UnicodeDecodeError:
                    await self.push("500 Error: strict ASCII mode")
                    return
        else:
            content = original_content
        self.envelope.content = content
        self.envelope.original_content = original_content
        status: Any = MISSING  # (the deprecated ``process_message`` API is not offered)
        if "DATA" in self._handle_hooks:
            self.content_crlf_only = crlf_only
            try:
                status = await self._call_handler_hook("DATA")
            finally:
                self.content_crlf_only = False
        self._post_data()
        await self.push("250 OK" if status is MISSING else status)
