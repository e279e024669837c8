"""Directed, typed ports between components, wired once by the system builder.

A target port wraps a blocking-transport handler (``transport(payload)`` is a SimPy
generator returning the completion time in ps) and, optionally, a non-blocking one
(``request(payload, value)`` returns an event that fires at completion, so an
initiator can keep several requests in flight without a process per request). An
initiator port forwards to the target it is connected to. ``connect`` checks both sides carry the same payload type,
like SystemC socket binding, so wiring mistakes fail at build time, not mid-run.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any


class TargetPort:
    """The receiving side of a connection: owns the handler that serves requests."""

    def __init__(self, owner: str, payload_type: type, handler: Callable[[Any], Generator],
                 nb_handler: Callable[..., Any] | None = None):
        self.owner = owner
        self.payload_type = payload_type
        self.handler = handler
        self.nb_handler = nb_handler


class InitiatorPort:
    """The requesting side of a connection."""

    def __init__(self, owner: str, payload_type: type):
        self.owner = owner
        self.payload_type = payload_type
        self.target: TargetPort | None = None

    def transport(self, payload) -> Generator:
        """Blocking transport: ``done_ps = yield from port.transport(txn)``."""
        if self.target is None:
            raise RuntimeError(f"port of {self.owner} is not connected")
        return (yield from self.target.handler(payload))

    def request(self, payload, value=None):
        """Non-blocking transport: an event that fires (with ``value``) when served."""
        if self.target is None or self.target.nb_handler is None:
            raise RuntimeError(f"port of {self.owner} is not connected to a non-blocking target")
        return self.target.nb_handler(payload, value)


def connect(initiator: InitiatorPort, target: TargetPort) -> None:
    """Bind an initiator to a target after checking that their payloads match."""
    if initiator.target is not None:
        raise ValueError(f"initiator port of {initiator.owner} is already connected")
    if initiator.payload_type is not target.payload_type:
        raise TypeError(f"{initiator.owner} sends {initiator.payload_type.__name__} but "
                        f"{target.owner} takes {target.payload_type.__name__}")
    initiator.target = target
