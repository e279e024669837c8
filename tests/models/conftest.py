"""Stand-ins that drive one component through its ports, as the system builder wires it."""

from __future__ import annotations

import pytest

from tlmsim.engine.payload import Completion
from tlmsim.engine.ports import QueuePort, TargetPort, connect
from tlmsim.models.buffer import BankAccess, BankCommand, TileData


class Issuer:
    """Stands in for the controller: queues commands on a unit and notes each completion."""

    def __init__(self, env, unit, payload_type):
        self.env = env
        self.port = QueuePort("issuer", payload_type)
        connect(self.port, unit.commands)
        self.done: list[tuple[object, int]] = []  # (work, time) of each completion
        self.completions = TargetPort("issuer", Completion, nb_handler=self._completed)
        connect(unit.done_port, self.completions)

    def send(self, *commands) -> None:
        """Queue ``commands`` in order at time 0 (each put yielded, as the controller does)."""
        def put_all():
            for command in commands:
                yield self.port.put(command)
        self.env.process(put_all())

    def _completed(self, done: Completion) -> None:
        self.done.append((done.work, self.env.now))


class ReadyOperands:
    """An operand buffer whose tiles are always there: a READ returns at once; streaming a
    tile out of it takes ``read_ps``."""

    def __init__(self, env, read_ps: int = 0):
        self.env = env
        self.read_ps = read_ps
        self.port = TargetPort("operands", BankAccess, self._read, self._release)
        self.reads = 0

    def _read(self, access: BankAccess):
        assert access.command is BankCommand.READ
        self.reads += 1
        yield self.env.timeout(0)
        return TileData(0, self.read_ps)

    def _release(self, access: BankAccess) -> None:
        assert access.command is BankCommand.RELEASE


@pytest.fixture
def wire_pe():
    """Wire a PE array (and optionally its decoder) to ready operands and an issuer."""
    from tlmsim.models.pe_array import Operands, PeCommand

    def wire(env, pe, decoder=None, read_ps: int = 0) -> Issuer:
        for source in Operands:
            connect(pe.operand_ports[source], ReadyOperands(env, read_ps).port)
        if decoder is not None:
            connect(pe.decoder_port, decoder.stream_port)
        return Issuer(env, pe, PeCommand)

    return wire
