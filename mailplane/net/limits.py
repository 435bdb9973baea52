"""Connection limits of one listener (SPEC §8a): how many sessions at once, from one client
IP at once, and new connections per client IP per minute — Postfix's process limit and
anvil's ``smtpd_client_connection_count_limit`` / ``smtpd_client_connection_rate_limit``.

:meth:`ConnectionLimiter.admit` decides when a connection is accepted, before any
session handler exists; an admitted connection holds a :class:`Ticket` until its
protocol's ``connection_lost`` releases it.  The counts are a listener's own
(:class:`LocalCounts`, in memory: the event loop is single-threaded, admission needs no
lock) or, for the MX of a node with several MX processes, the node's
(:class:`mailplane.net.anvil.NodeCounts`, shared by those processes like Postfix's
anvil).  IPv4-mapped IPv6 peers count as their IPv4 address and IPv6 peers by their /64,
the block one subscriber gets.
"""

from __future__ import annotations

import contextlib
import ipaddress
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from mailplane import metrics
from mailplane.config.limits import ListenerLimits

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The window of ``connections_per_ip_per_minute``.
RATE_WINDOW_SECONDS = 60.0


class Refusal(Enum):
    """Why a connection was refused (the ``limit`` label of the refusal metric)."""

    LISTENER_FULL = "listener_connections"
    IP_CONNECTIONS = "ip_connections"
    IP_RATE = "ip_connection_rate"


def client_key(peer_ip: str) -> str:
    """The unit per-IP limits count: the address itself, an IPv4-mapped IPv6 address as
    IPv4, and an IPv6 address as its /64."""
    try:
        address = ipaddress.ip_address(peer_ip.split("%", 1)[0])
    except ValueError:
        return peer_ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def in_networks(peer_ip: str, networks: tuple[Network, ...]) -> bool:
    if not networks:
        return False
    try:
        address = ipaddress.ip_address(peer_ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    listener: str
    max_connections: int
    max_per_ip: int
    rate_per_ip_per_minute: int = 0
    pressure_threshold: float = 0.8
    exempt: tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, listener: str, limits: ListenerLimits,
                      exempt_networks: Iterable[str] = ()) -> ConnectionLimits:
        return cls(listener=listener, max_connections=limits.max_connections,
                   max_per_ip=limits.max_connections_per_ip,
                   rate_per_ip_per_minute=limits.connections_per_ip_per_minute,
                   pressure_threshold=limits.pressure_threshold,
                   exempt=parse_networks(exempt_networks))


class Ticket:
    """One admitted connection; :meth:`release` (idempotent) gives its place back."""

    __slots__ = ("_limiter", "_released", "key")

    def __init__(self, limiter: ConnectionLimiter, key: str) -> None:
        self._limiter = limiter
        self.key = key
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._limiter._release(self.key)


class ConnectionCounts(Protocol):
    """What a limiter counts: sessions open (in all, per client key) and admissions per
    client key in the last minute.  ``locked()`` makes check-then-``add`` atomic."""

    def locked(self) -> contextlib.AbstractContextManager[None]: ...

    def total(self) -> int: ...

    def of(self, key: str) -> int: ...

    def recent(self, key: str, now: float) -> float: ...

    def add(self, key: str, now: float, *, rated: bool) -> None: ...

    def remove(self, key: str) -> None: ...


class LocalCounts:
    """The counts of one listener in this process (every listener, and the MX of a node
    with one MX process): exact sliding minute per client."""

    def __init__(self, rate_per_minute: int) -> None:
        self._rate = rate_per_minute
        self._active = 0
        self._per_key: dict[str, int] = {}
        self._recent: dict[str, deque[float]] = {}
        self._adds_since_prune = 0

    def locked(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def total(self) -> int:
        return self._active

    def of(self, key: str) -> int:
        return self._per_key.get(key, 0)

    def recent(self, key: str, now: float) -> float:
        recent = self._recent.get(key)
        if recent is None:
            return 0
        while recent and now - recent[0] >= RATE_WINDOW_SECONDS:
            recent.popleft()
        return len(recent)

    def add(self, key: str, now: float, *, rated: bool) -> None:
        self._active += 1
        self._per_key[key] = self._per_key.get(key, 0) + 1
        if not rated or self._rate <= 0:
            return
        recent = self._recent.get(key)
        if recent is None:
            recent = self._recent[key] = deque(maxlen=self._rate)
        recent.append(now)
        self._adds_since_prune += 1
        if self._adds_since_prune >= 1024:
            self._prune(now)

    def _prune(self, now: float) -> None:
        """Forget clients whose last connection is older than the rate window."""
        self._adds_since_prune = 0
        for key in [k for k, q in self._recent.items()
                    if not q or now - q[-1] >= RATE_WINDOW_SECONDS]:
            del self._recent[key]

    def remove(self, key: str) -> None:
        self._active -= 1
        left = self._per_key.get(key, 0) - 1
        if left > 0:
            self._per_key[key] = left
        else:
            self._per_key.pop(key, None)


class ConnectionLimiter:
    """Admission for one listener (several sockets may share it: submission's two)."""

    def __init__(self, limits: ConnectionLimits, *,
                 clock: Callable[[], float] = time.monotonic,
                 counts: ConnectionCounts | None = None) -> None:
        self.limits = limits
        self._clock = clock
        self._counts: ConnectionCounts = counts if counts is not None else LocalCounts(
            limits.rate_per_ip_per_minute)
        #: Sessions of this listener in this process (the gauge; the limits use counts).
        self._here = 0
        self._gauge = metrics.CONNECTIONS.labels(limits.listener)
        #: Called (without arguments) when the listener is full and must shed idle
        #: sessions (the listener closes the longest-idle ones, see smtp/base.py).
        self.on_pressure: Callable[[], None] | None = None

    @property
    def active(self) -> int:
        """Sessions open on the listener (on every MX process of the node if shared)."""
        return self._counts.total()

    @property
    def under_pressure(self) -> bool:
        return self._counts.total() >= self.limits.pressure_threshold * self.limits.max_connections

    def per_ip(self, peer_ip: str) -> int:
        return self._counts.of(client_key(peer_ip))

    def admit(self, peer_ip: str) -> Ticket | Refusal:
        """A ticket for the connection, or why it is refused (counted in the metric)."""
        key = client_key(peer_ip)
        exempt = in_networks(peer_ip, self.limits.exempt)
        now = self._clock()
        with self._counts.locked():
            refusal = self._refusal(key, exempt, now)
            if refusal is None:
                self._counts.add(key, now, rated=bool(self.limits.rate_per_ip_per_minute)
                                 and not exempt)
        if refusal is not None:
            metrics.LIMIT_REFUSALS.labels(self.limits.listener, refusal.value).inc()
            if refusal is Refusal.LISTENER_FULL and self.on_pressure is not None:
                self.on_pressure()
            return refusal
        self._here += 1
        self._gauge.set(self._here)
        if self.under_pressure and self.on_pressure is not None:
            self.on_pressure()
        return Ticket(self, key)

    def _refusal(self, key: str, exempt: bool, now: float) -> Refusal | None:
        limits = self.limits
        if self._counts.total() >= limits.max_connections:
            return Refusal.LISTENER_FULL
        if exempt:
            return None
        if self._counts.of(key) >= limits.max_per_ip:
            return Refusal.IP_CONNECTIONS
        rate = limits.rate_per_ip_per_minute
        if rate and self._counts.recent(key, now) >= rate:
            return Refusal.IP_RATE
        return None

    def _release(self, key: str) -> None:
        self._counts.remove(key)
        self._here -= 1
        self._gauge.set(self._here)
