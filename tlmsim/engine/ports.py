"""Directed, typed ports between components, wired once by the system builder.

Two kinds of link, both bound with ``connect``, which checks that both sides carry the
same payload type (like SystemC socket binding), so wiring mistakes fail at build time:

* **Transport** (TLM-2.0 sockets). A ``TargetPort`` wraps a blocking handler
  (``done = yield from port.transport(payload)``: a SimPy generator) and/or a non-blocking
  one (``port.request(payload)`` answers at once: an event that fires at completion, or
  nothing for a notification). An ``InitiatorPort`` forwards to its target.
* **Queues** (tlm_fifo). A ``QueueTarget`` is the receiving end of an in-order command
  queue of ``depth`` payloads; the owner takes them with ``yield port.get()``. A
  ``QueuePort`` puts into it: ``yield port.put(payload)`` waits while the queue is full.

Payloads are frozen dataclasses: what crosses a link cannot be changed by either side.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import simpy


class TargetPort:
    """The receiving side of a transport link: owns the handlers that serve requests."""

    def __init__(self, owner: str, payload_type: type, handler: Callable[[Any], Generator] | None = None,
                 nb_handler: Callable[[Any], Any] | None = None):
        self.owner = owner
        self.payload_type = payload_type
        self.handler = handler
        self.nb_handler = nb_handler


class InitiatorPort:
    """The requesting side of a transport link."""

    def __init__(self, owner: str, payload_type: type):
        self.owner = owner
        self.payload_type = payload_type
        self.target: TargetPort | None = None

    def transport(self, payload) -> Generator:
        """Blocking transport: ``result = yield from port.transport(payload)``."""
        target = self._bound(payload)
        if target.handler is None:
            raise RuntimeError(f"{target.owner} serves {self.owner} only without blocking")
        return (yield from target.handler(payload))

    def request(self, payload):
        """Non-blocking transport: the target's immediate answer (for a memory, an event that
        fires with the response when served)."""
        target = self._bound(payload)
        if target.nb_handler is None:
            raise RuntimeError(f"{target.owner} serves {self.owner} only with blocking transport")
        return target.nb_handler(payload)

    def _bound(self, payload) -> TargetPort:
        if self.target is None:
            raise RuntimeError(f"port of {self.owner} is not connected")
        _check_payload(self.owner, self.payload_type, payload)
        return self.target


class QueueTarget:
    """The receiving end of an in-order command queue (``depth`` payloads; None: unbounded)."""

    def __init__(self, env: simpy.Environment, owner: str, payload_type: type, depth: int | None = None):
        self.owner = owner
        self.payload_type = payload_type
        self._store = simpy.Store(env, capacity=depth or float("inf"))

    def get(self) -> simpy.Event:
        """An event that fires with the oldest queued payload (at once if there is one)."""
        return self._store.get()

    def queued(self) -> tuple:
        """The payloads waiting in the queue, oldest first."""
        return tuple(self._store.items)


class QueuePort:
    """The sending end of a command queue."""

    def __init__(self, owner: str, payload_type: type):
        self.owner = owner
        self.payload_type = payload_type
        self.target: QueueTarget | None = None

    def put(self, payload) -> simpy.Event:
        """An event that fires once ``payload`` is in the queue: ``yield port.put(payload)``."""
        if self.target is None:
            raise RuntimeError(f"queue port of {self.owner} is not connected")
        _check_payload(self.owner, self.payload_type, payload)
        return self.target._store.put(payload)


def connect(initiator: InitiatorPort | QueuePort, target: TargetPort | QueueTarget) -> None:
    """Bind an initiator to a target after checking that their kinds and payloads match."""
    if isinstance(initiator, QueuePort) != isinstance(target, QueueTarget):
        raise TypeError(f"{initiator.owner}'s {type(initiator).__name__} cannot bind to "
                        f"{target.owner}'s {type(target).__name__}")
    if initiator.target is not None:
        raise ValueError(f"initiator port of {initiator.owner} is already connected")
    if initiator.payload_type is not target.payload_type:
        raise TypeError(f"{initiator.owner} sends {initiator.payload_type.__name__} but "
                        f"{target.owner} takes {target.payload_type.__name__}")
    initiator.target = target


def _check_payload(owner: str, payload_type: type, payload) -> None:
    if type(payload) is not payload_type:
        raise TypeError(f"{owner} sent a {type(payload).__name__} on a port for {payload_type.__name__}")
