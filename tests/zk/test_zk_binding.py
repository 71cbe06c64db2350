"""Random linear check and blame, over a self-contained toy secure aggregation.

The toy aggregation below is deliberately minimal (numpy masks, complete masking graph, no key
agreement or secret sharing): it exercises exactly the algebra the binding relies on, that
pairwise masks cancel mod 2^b and their field analogues cancel mod p. Real SecAgg+ lives in
fedledger.secagg.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from zk_support import SMALL

from fedledger.core.errors import ConfigError
from fedledger.zk.binding import (
    MemberEvidence,
    adjudicate,
    blame,
    carry_spec,
    carry_vector,
    check_aggregate,
    commit_carries,
    derive_challenge,
    field_mask,
    kappa,
    lift,
    mask_blinding,
    masked_input_digest,
    open_carries,
    posting_digest,
    project,
    sigma,
    unmask_blinding,
    vector_digest,
)
from fedledger.zk.errors import LinearCheckFailed
from fedledger.zk.field import P, random_field
from fedledger.zk.update import ProofContext, UpdateProver, chunk_witnesses, commit_update, verify_update

pytestmark = pytest.mark.filterwarnings("ignore::fedledger.zk.backend.DevelopmentSetupWarning")

BITS = 32
MOD = 1 << BITS
DIM = 40


@dataclass
class ToyRound:
    members: list[str]
    self_masks: dict[str, np.ndarray]
    self_seeds: dict[str, bytes]
    pair_masks: dict[tuple[str, str], np.ndarray]  # key (i, j) with i < j
    pair_seeds: dict[tuple[str, str], bytes]

    @classmethod
    def create(cls, members: list[str], dim: int, rng: np.random.Generator) -> ToyRound:
        pairs = list(itertools.combinations(sorted(members), 2))
        return cls(
            members,
            {m: rng.integers(0, MOD, dim, dtype=np.uint64) for m in members},
            {m: rng.bytes(32) for m in members},
            {p: rng.integers(0, MOD, dim, dtype=np.uint64) for p in pairs},
            {p: rng.bytes(32) for p in pairs},
        )

    @property
    def self_field(self) -> dict[str, int]:
        return {m: field_mask(seed) for m, seed in self.self_seeds.items()}

    def pair_seeds_of(self, i: str) -> dict[str, bytes]:
        return {j: self.pair_seeds[(min(i, j), max(i, j))] for j in self.members if j != i}

    def pair(self, i: str, j: str) -> tuple[np.ndarray, int]:
        key = (min(i, j), max(i, j))
        return self.pair_masks[key], field_mask(self.pair_seeds[key])

    def mask_parts(self, i: str) -> list[tuple[int, np.ndarray]]:
        parts = [(1, self.self_masks[i])]
        parts += [(sigma(i, j), self.pair(i, j)[0]) for j in self.members if j != i]
        return parts

    def mask(self, i: str, y: np.ndarray, t: int) -> tuple[np.ndarray, int]:
        z = np.asarray(y, dtype=object) % MOD
        for sign, m in self.mask_parts(i):
            z = (z + sign * m.astype(object)) % MOD
        return z.astype(np.uint64), mask_blinding(i, t, self.self_seeds[i], self.pair_seeds_of(i))

    def unmask(self, survivors: list[str], z: dict[str, np.ndarray], u: dict[str, int]) -> tuple[np.ndarray, int]:
        """Aggregate of survivors: remove their self masks and the masks shared with dropped members."""
        dropped = [m for m in self.members if m not in survivors]
        agg = sum((z[i].astype(object) for i in survivors), np.zeros(len(z[survivors[0]]), dtype=object))
        for i in survivors:
            agg = agg - self.self_masks[i].astype(object)
            for j in dropped:
                agg = agg - sigma(i, j) * self.pair(i, j)[0].astype(object)
        tsum = unmask_blinding(
            {i: u[i] for i in survivors},
            {i: self.self_seeds[i] for i in survivors},
            {(i, j): self.pair_seeds[(min(i, j), max(i, j))] for i in survivors for j in dropped},
        )
        return lift((agg % MOD).astype(np.uint64), BITS), tsum


def run_round(small_prover, members, cheat=None, dropped=(), prove=False, seed=0):
    """One round end to end. `cheat` = (member, delta): that member masks y + delta, proves y."""
    rng = np.random.default_rng(seed)
    toy = ToyRound.create(members, DIM, rng)
    secrets, posted, z, u, w, post = {}, {}, {}, {}, {}, []
    for m in members:
        x, e = rng.integers(-300, 300, DIM), rng.integers(-40, 40, DIM)
        secrets[m], posted[m] = commit_update(SMALL, ProofContext("task", 1, m), x, e, rng)
        y_fed = x + e
        if cheat is not None and cheat[0] == m:
            y_fed = y_fed + cheat[1]
        z[m], u[m] = toy.mask(m, y_fed, secrets[m].t)
        w[m] = carry_vector(y_fed, toy.mask_parts(m), z[m], BITS)
        post.append(posting_digest(posted[m], masked_input_digest(z[m], u[m]), vector_digest(w[m])))
    r = derive_challenge(b"round-seed", post)
    s = {}
    for m in members:
        if prove:
            proof = small_prover.prove_update(secrets[m], posted[m], r)
            verify_update(small_prover.keys, SMALL, posted[m], proof, r)
            s[m] = proof.s
        else:
            s[m] = chunk_witnesses(SMALL, secrets[m], posted[m], r)[0]
    survivors = [m for m in members if m not in dropped]
    agg, tsum = toy.unmask(survivors, z, u)
    return toy, r, {m: s[m] for m in survivors}, agg, tsum, z, u, w, secrets


def evidence_and_reports(toy, r, s, z, u, w, survivors):
    ev = {
        m: MemberEvidence(
            s=s[m],
            masked=z[m],
            masked_blinding=u[m],
            self_projection=(project(r, toy.self_masks[m]) + toy.self_field[m]) % P,
            carries=w[m],
            carry_digest=vector_digest(w[m]),
        )
        for m in survivors
    }
    reports = {}
    for i in toy.members:
        for j in toy.members:
            if i != j:
                reports[(i, j)] = kappa(r, *toy.pair(i, j))
    graph = {m: [j for j in toy.members if j != m] for m in toy.members}
    return ev, reports, graph


MEMBERS = ["alice", "bob", "carol", "dave"]


@pytest.mark.slow
def test_honest_round_with_real_proofs_passes(small_prover) -> None:
    _, r, s, agg, tsum, *_ = run_round(small_prover, MEMBERS, prove=True)
    check_aggregate(r, s, agg, tsum)


def test_honest_round_passes_and_blame_names_nobody(small_prover) -> None:
    toy, r, s, agg, tsum, z, u, w, _ = run_round(small_prover, MEMBERS)
    check_aggregate(r, s, agg, tsum)
    ev, reports, graph = evidence_and_reports(toy, r, s, z, u, w, MEMBERS)
    assert blame(r, BITS, ev, reports, graph) == blame(r, BITS, ev, reports, graph)
    report = blame(r, BITS, ev, reports, graph)
    assert report.culprits == () and report.disputed == ()


def test_dropouts_do_not_break_the_check(small_prover) -> None:
    survivors = ["alice", "carol", "dave"]
    toy, r, s, agg, tsum, z, u, w, _ = run_round(small_prover, MEMBERS, dropped=("bob",))
    check_aggregate(r, s, agg, tsum)
    ev, reports, graph = evidence_and_reports(toy, r, s, z, u, w, survivors)
    assert blame(r, BITS, ev, reports, graph).culprits == ()


@pytest.mark.parametrize("delta_kind", ["one-entry", "dense", "wrap"])
def test_masking_another_vector_is_caught_and_named(small_prover, delta_kind) -> None:
    delta = np.zeros(DIM, dtype=np.int64)
    if delta_kind == "one-entry":
        delta[7] = 1
    elif delta_kind == "dense":
        delta = np.random.default_rng(4).integers(-5000, 5000, DIM)
    else:  # a huge change that a mod-2^b aggregate would hide if A were not lifted
        delta[0] = 2**30
    toy, r, s, agg, tsum, z, u, w, _ = run_round(small_prover, MEMBERS, cheat=("carol", delta))
    with pytest.raises(LinearCheckFailed):
        check_aggregate(r, s, agg, tsum)
    ev, reports, graph = evidence_and_reports(toy, r, s, z, u, w, MEMBERS)
    report = blame(r, BITS, ev, reports, graph)
    assert report.culprits == ("carol",)
    assert report.disputed == ()


def test_cheater_lying_about_a_pair_projection_is_disputed_and_adjudicated(small_prover) -> None:
    delta = np.zeros(DIM, dtype=np.int64)
    delta[3] = -17
    toy, r, s, _agg, _tsum, z, u, w, _ = run_round(small_prover, MEMBERS, cheat=("bob", delta))
    ev, reports, graph = evidence_and_reports(toy, r, s, z, u, w, MEMBERS)
    # bob shifts its report for the pair with dave so that its own equation holds
    gap = (project(r, delta) * sigma("bob", "dave")) % P
    reports[("bob", "dave")] = (reports[("bob", "dave")] + gap) % P
    report = blame(r, BITS, ev, reports, graph)
    assert "bob" not in report.culprits  # the lie fixed bob's own equation ...
    assert report.disputed == (("bob", "dave"),)  # ... but dave contradicts it
    assert adjudicate(("bob", "dave"), kappa(r, *toy.pair("bob", "dave")), reports) == ("bob",)


def test_refusing_or_forging_carries_makes_a_culprit(small_prover) -> None:
    toy, r, s, _agg, _tsum, z, u, w, _ = run_round(small_prover, MEMBERS)
    ev, reports, graph = evidence_and_reports(toy, r, s, z, u, w, MEMBERS)
    forged = w["alice"].copy()
    forged[0] += 1
    ev["alice"] = MemberEvidence(**{**ev["alice"].__dict__, "carries": forged})
    ev["dave"] = MemberEvidence(**{**ev["dave"].__dict__, "carries": None})
    assert blame(r, BITS, ev, reports, graph).culprits == ("alice", "dave")


def test_wrong_blinding_in_field_coordinate_is_caught(small_prover) -> None:
    toy, r, s, agg, tsum, z, u, w, _ = run_round(small_prover, MEMBERS)
    with pytest.raises(LinearCheckFailed):
        check_aggregate(r, s, agg, (tsum + 1) % P)
    u = dict(u)
    u["dave"] = (u["dave"] + 5) % P
    ev, reports, graph = evidence_and_reports(toy, r, s, z, u, w, MEMBERS)
    assert blame(r, BITS, ev, reports, graph).culprits == ("dave",)


def test_challenge_depends_on_every_posting() -> None:
    posts = [bytes([i]) * 32 for i in range(4)]
    r = derive_challenge(b"seed", posts)
    assert 0 < r < P
    assert derive_challenge(b"seed", [*posts[:3], b"\x09" * 32]) != r
    assert derive_challenge(b"seed2", posts) != r


@settings(max_examples=60, deadline=None)
@given(
    y=st.lists(st.integers(-(2**20), 2**20), min_size=1, max_size=24),
    masks=st.lists(st.integers(0, MOD - 1), min_size=3, max_size=3),
    signs=st.tuples(st.sampled_from([1, -1]), st.sampled_from([1, -1])),
    r=st.integers(1, P - 1),
)
def test_carry_identity_holds_for_any_masks(y, masks, signs, r) -> None:
    """<r, z> + 2^b <r, w> == <r, y> + sum sign <r, mask>: the honest member's blame equation."""
    d = len(y)
    yv = np.array(y, dtype=np.int64)
    parts = [
        (1, np.full(d, masks[0], dtype=np.uint64)),
        (signs[0], np.full(d, masks[1], dtype=np.uint64)),
        (signs[1], np.full(d, masks[2], dtype=np.uint64)),
    ]
    total = yv.astype(object)
    for sign, m in parts:
        total = total + sign * m.astype(object)
    z = (total % MOD).astype(np.uint64)
    w = carry_vector(yv, parts, z, BITS)
    assert np.abs(w).max() <= 3
    lhs = (project(r, z) + pow(2, BITS, P) * project(r, w)) % P
    rhs = (project(r, yv) + sum(sign * project(r, m) for sign, m in parts)) % P
    assert lhs == rhs


@settings(max_examples=60, deadline=None)
@given(
    delta=st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=64).filter(any),
    r=st.integers(2, P - 1),
)
def test_nonzero_difference_changes_the_projection(delta, r) -> None:
    """Schwartz-Zippel in practice: a non-zero integer difference is visible to a random r."""
    assert project(r, np.array(delta, dtype=np.int64)) != 0


@settings(max_examples=40, deadline=None)
@given(v=st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=32))
def test_lift_inverts_wrap(v) -> None:
    a = np.array(v, dtype=np.int64)
    assert (lift((a % MOD).astype(np.uint64), BITS) == a).all()


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 6),
    drop=st.sets(st.integers(0, 5), max_size=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_field_coordinate_unmasks_to_the_sum_of_blindings_over_survivors(n, drop, seed) -> None:
    members = [f"m{i}" for i in range(n)]
    survivors = [m for i, m in enumerate(members) if i not in drop] or members[:1]
    rng = np.random.default_rng(seed)
    toy = ToyRound.create(members, 1, rng)
    ts = {m: random_field(rng) for m in members}
    u = {m: toy.mask(m, np.zeros(1, dtype=np.int64), ts[m])[1] for m in members}
    _, tsum = toy.unmask(survivors, {m: np.zeros(1, dtype=np.uint64) for m in members}, u)
    assert tsum == sum(ts[m] for m in survivors) % P
    if len(survivors) > 1:  # a single masked coordinate reveals nothing: it is uniform
        assert u[survivors[0]] != ts[survivors[0]]


@pytest.mark.slow
def test_blame_with_carries_opened_in_zero_knowledge(small_prover) -> None:
    """Blame without revealing carry vectors: each member proves <r, w_i> for its committed carries."""
    delta = np.zeros(DIM, dtype=np.int64)
    delta[11] = 3
    toy, r, s, _agg, _tsum, z, u, w, _ = run_round(small_prover, MEMBERS, cheat=("dave", delta))
    ev, reports, graph = evidence_and_reports(toy, r, s, z, u, w, MEMBERS)
    contexts = {m: ProofContext("task", 1, m) for m in MEMBERS}
    rng = np.random.default_rng(77)
    with pytest.raises(ConfigError):
        open_carries(small_prover, *commit_carries(SMALL, contexts["alice"], w["alice"], rng), r)
    carry_prover = UpdateProver(carry_spec(SMALL), small_prover.backend)
    zk_ev = {}
    for m in MEMBERS:
        secret, posted = commit_carries(SMALL, contexts[m], w[m], rng)
        opening = open_carries(carry_prover, secret, posted, r)
        zk_ev[m] = dataclasses.replace(ev[m], carries=None, carry_digest=posted.digest(), carry_opening=opening)
    kw = {"carry_keys": small_prover.keys, "spec": SMALL, "contexts": contexts}
    assert blame(r, BITS, zk_ev, reports, graph, **kw).culprits == ("dave",)
    # without the keys the openings cannot be checked: everyone is a culprit, nobody is cleared
    assert blame(r, BITS, zk_ev, reports, graph).culprits == tuple(MEMBERS)
    # an opening whose first state hides t != 0 (salt0 does not open it to t = 0) is rejected
    bad = zk_ev["alice"].carry_opening
    zk_ev["alice"] = dataclasses.replace(zk_ev["alice"], carry_opening=dataclasses.replace(bad, salt0=bad.salt0 + 1))
    assert blame(r, BITS, zk_ev, reports, graph, **kw).culprits == ("alice", "dave")
    # an opening made under another member's context is rejected
    secret, posted = commit_carries(SMALL, contexts["bob"], w["carol"], rng)
    zk_ev["carol"] = dataclasses.replace(
        zk_ev["carol"], carry_digest=posted.digest(), carry_opening=open_carries(carry_prover, secret, posted, r)
    )
    assert "carol" in blame(r, BITS, zk_ev, reports, graph, **kw).culprits
