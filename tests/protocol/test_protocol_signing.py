"""Signed protocol messages: a signature verifies only for its sender's registered key, context and payload."""

from __future__ import annotations

import pytest

from fedledger.protocol.messages import MessageError
from fedledger.protocol.signing import Context, Registry, ReplayGuard, Signed, check, data_commitment
from fedledger.secagg.keys import Identity

ALICE, BOB = "0x" + "a1" * 20, "0x" + "b2" * 20
CTX = Context(31337, "0x" + "5f" * 20, 1, 2, 0, "update")


def _registry() -> tuple[Registry, Identity, Identity]:
    a, b = Identity(bytes(range(32))), Identity(bytes(range(1, 33)))
    return Registry.of({ALICE: (a.public_bytes, data_commitment(120, b"a")),
                        BOB: (b.public_bytes, data_commitment(80, b"b"))}), a, b


def test_a_signed_message_round_trips_and_verifies() -> None:
    reg, alice, _ = _registry()
    msg = Signed.make(alice, CTX, ALICE, b"payload")
    again = Signed.from_bytes(msg.to_bytes())
    assert again == msg
    check(again, reg, CTX, envelope_sender=ALICE, senders=frozenset({ALICE}))
    assert reg.committed_examples(ALICE) == 120 and reg.committed_examples(BOB) == 80


def test_a_forged_sender_is_refused() -> None:
    reg, alice, _ = _registry()
    forged = Signed.make(alice, CTX, BOB, b"payload")  # alice signs in bob's name
    with pytest.raises(MessageError, match="bad signature"):
        check(forged, reg, CTX, envelope_sender=BOB)
    honest = Signed.make(alice, CTX, ALICE, b"payload")
    with pytest.raises(MessageError, match="envelope's sender"):
        check(honest, reg, CTX, envelope_sender=BOB)  # re-addressed to look like bob's
    with pytest.raises(MessageError, match="may not send"):
        check(honest, reg, CTX, senders=frozenset({BOB}))
    stranger = Signed.make(Identity(bytes(32)), CTX, "0x" + "cc" * 20, b"payload")
    with pytest.raises(MessageError, match="no key registered"):
        check(stranger, reg, CTX)


@pytest.mark.parametrize("field,value", [("round", 3), ("attempt", 1), ("task", 2), ("topic", "secagg/0"),
                                         ("chain_id", 1), ("contract", "0x" + "00" * 20)])
def test_a_message_for_another_context_is_refused(field: str, value: object) -> None:
    reg, alice, _ = _registry()
    msg = Signed.make(alice, CTX, ALICE, b"payload")
    other = Context(**{**{f: getattr(CTX, f) for f in CTX.__slots__}, field: value})
    with pytest.raises(MessageError, match="replayed or misdirected"):
        check(msg, reg, other)
    # re-labelling the message's context breaks its signature
    relabelled = Signed(other, msg.sender, msg.payload, msg.signature)
    with pytest.raises(MessageError, match="bad signature"):
        check(relabelled, reg, other)


def test_tampered_payload_and_malformed_bytes_are_refused() -> None:
    reg, alice, _ = _registry()
    msg = Signed.make(alice, CTX, ALICE, b"payload")
    with pytest.raises(MessageError, match="bad signature"):
        check(Signed(CTX, ALICE, b"PAYLOAD", msg.signature), reg, CTX)
    wire = msg.to_bytes()
    for bad in (wire[:-1], wire + b"\0", b"\x02" + wire[1:], b""):
        with pytest.raises(MessageError):
            Signed.from_bytes(bad)


def test_the_replay_guard_refuses_a_second_copy() -> None:
    _, alice, _ = _registry()
    guard = ReplayGuard()
    msg = Signed.make(alice, CTX, ALICE, b"payload")
    guard.admit(msg)
    with pytest.raises(MessageError, match="replay"):
        guard.admit(Signed.from_bytes(msg.to_bytes()))
