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


def test_a_queue_holds_depth_payloads_and_a_put_waits_for_room(ctx):
    from tlmsim.engine.ports import QueuePort, QueueTarget

    env = ctx.env
    target = QueueTarget(env, "unit", int, depth=2)
    port = QueuePort("issuer", int)
    connect(port, target)
    put_at = []

    def issuer():
        for value in range(4):
            yield port.put(value)
            put_at.append((value, env.now))

    def unit():
        yield env.timeout(10)
        while True:
            value = yield target.get()
            yield env.timeout(10)
            assert value in range(4)

    env.process(issuer())
    env.process(unit())
    env.run(until=5)
    assert target.queued() == (0, 1) and put_at == [(0, 0), (1, 0)]  # the third put waits for room
    env.run(until=100)
    assert put_at == [(0, 0), (1, 0), (2, 10), (3, 20)]


def test_ports_refuse_a_payload_of_another_type_and_a_mismatched_kind(ctx):
    from tlmsim.engine.ports import QueuePort, QueueTarget

    port = QueuePort("issuer", int)
    with pytest.raises(TypeError, match="QueuePort cannot bind to t's TargetPort"):
        connect(port, TargetPort("t", int, lambda p: iter(())))
    connect(port, QueueTarget(ctx.env, "unit", int))
    with pytest.raises(TypeError, match="issuer sent a str on a port for int"):
        port.put("not an int")
    blocking_only = InitiatorPort("i", Transaction)
    connect(blocking_only, TargetPort("t", Transaction, lambda p: iter(())))
    with pytest.raises(RuntimeError, match="only with blocking transport"):
        blocking_only.request(Transaction(Command.READ, 0, 1, "s", "l", 0))


def test_payloads_on_component_links_are_frozen():
    import dataclasses

    from tlmsim.engine.payload import Completion, Response
    from tlmsim.models.buffer import BankAccess
    from tlmsim.models.decoder import DecodeStream
    from tlmsim.models.dma import Descriptor
    from tlmsim.models.pe_array import PeCommand
    from tlmsim.models.vector_unit import VectorCommand

    for payload in (Transaction, Response, Completion, BankAccess, DecodeStream, Descriptor, PeCommand, VectorCommand):
        assert dataclasses.is_dataclass(payload) and payload.__dataclass_params__.frozen, payload.__name__
