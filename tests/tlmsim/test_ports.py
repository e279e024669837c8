"""Ports: typed binding, and transport through a connected pair."""

import pytest

from tlmsim.engine.payload import Command, Transaction
from tlmsim.engine.ports import InitiatorPort, TargetPort, connect


def test_connect_checks_payload_types():
    with pytest.raises(TypeError, match="sends Transaction but t takes int"):
        connect(InitiatorPort("i", Transaction), TargetPort("t", int, lambda p: iter(())))


def test_an_initiator_binds_once():
    port = InitiatorPort("i", Transaction)
    target = TargetPort("t", Transaction, lambda p: iter(()))
    connect(port, target)
    with pytest.raises(ValueError, match="already connected"):
        connect(port, target)


def test_transport_returns_the_targets_answer(ctx):
    def handler(txn):
        yield ctx.env.timeout(txn.nbytes)
        return ctx.env.now

    port = InitiatorPort("i", Transaction)
    connect(port, TargetPort("t", Transaction, handler))
    result = []

    def proc():
        result.append((yield from port.transport(Transaction(Command.READ, 0, 42, "s", "l", 0))))

    ctx.env.process(proc())
    ctx.env.run()
    assert result == [42]


def test_transactions_reject_empty_requests():
    with pytest.raises(ValueError):
        Transaction(Command.READ, 0, 0, "s", "l", 0)
