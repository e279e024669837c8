"""The generic payload exchanged between initiators and targets (TLM-2.0 style)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Command(Enum):
    """What a transaction asks of its target."""

    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class Transaction:
    """One memory-mapped request: command, address range, who asked and when."""

    command: Command
    addr: int
    nbytes: int
    stream: str  # initiator / purpose tag, e.g. "weights", "kv", "act"
    label: str  # what it is for (layer name), shown in traces
    issue_ps: int
    qos: int = 0  # AXI4 AxQOS: a target that arbitrates by QoS serves a higher value first

    def __post_init__(self) -> None:
        if self.nbytes <= 0:
            raise ValueError(f"transaction of {self.nbytes} bytes: must be > 0")
        if self.addr < 0:
            raise ValueError(f"negative address {self.addr}")


@dataclass(frozen=True)
class Response:
    """A target's answer to a transaction: when it completed."""

    txn: Transaction
    done_ps: int


@dataclass(frozen=True)
class Completion:
    """A unit tells whoever issued a command that its work ``work`` (the issuer's own id) is done."""

    work: object
    label: str
    done_ps: int
