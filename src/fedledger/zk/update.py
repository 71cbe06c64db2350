"""Update proof: a trainer's secure-aggregation input is well formed and bound to a commitment.

The input the trainer feeds into secure aggregation is y = x + e (signed integers), where x is
its clipped, rotated, scaled and stochastically rounded update and e its discrete-Gaussian
noise share. The proof shows, without revealing x or e:

* every y_j fits in `value_bits` = max(entry_bits, noise_bits) + 1 bits (two's complement),
  the width any honest x_j + e_j needs;
* ||y|| <= sqrt(bound2x) + sqrt(bound2e): the update's bound (the task's clipping bound in
  integer units) and the noise share's bound, folded into one norm (docs/zk.md argues why the
  separate checks on x and e add nothing a verifier can rely on);
* the committed vector is the one in the random linear check: s = sum_j r^j y_j + t.

Vectors longer than one chunk (at most 8,192 entries) are proved chunk by chunk; each chunk
proof moves a hidden running state (Poseidon commitment to the partial sums and t) from
`state_in` to `state_out`, and both the chunk commitment and the states are bound to the
context (task, round, member) and the chunk index, so chunks cannot be reordered, dropped,
or mixed between members or rounds. Flow:

    secret, posted = commit_update(spec, ctx, x, e, rng)        # before the challenge
    ... masked inputs and digest(posted) are fixed; challenge r drawn from chain randomness ...
    proof = prover.prove_update(secret, posted, r)                # s = proof.s
    verify_update(keys, spec, posted, proof, r)                   # raises InvalidProof
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fedledger.core.errors import ConfigError, DataError
from fedledger.core.hashing import Usage, domain_hash
from fedledger.core.rng import ByteSource
from fedledger.zk.backend import (
    CIRCUIT_DIR,
    Circuit,
    Groth16Backend,
    KeySet,
    ProverPool,
    prove_native_checked,
    prove_wtns_checked,
)
from fedledger.zk.errors import InvalidProof, ProvingError
from fedledger.zk.field import P, hash_to_field, int_bytes, random_field, to_field
from fedledger.zk.poseidon import circomlib_dir, poseidon, poseidon_signals, sponge
from fedledger.zk.witness import WitnessPlan, build_plan, write_wtns

MAX_CHUNK = 8192
DEFAULT_CHUNK = 4096
TAG_COMMIT = hash_to_field("update/chunk-commitment")
TAG_STATE = hash_to_field("update/running-state")
PUBLIC_INPUTS = (
    "ctx",
    "k",
    "first",
    "last",
    "commit",
    "stateIn",
    "stateOut",
    "r",
    "rOff",
    "s",
    "bound2x",
    "bound2e",
)


@dataclass(frozen=True)
class UpdateSpec:
    """The task's proof parameters. Bit widths and chunk size fix the circuit (and its keys);
    the squared norm bounds are public inputs, so tasks can change them without a new setup."""

    chunk_size: int = DEFAULT_CHUNK
    entry_bits: int = 16
    noise_bits: int = 12
    norm_bits: int = 64
    bound2x: int = 2**40
    bound2e: int = 2**40

    def __post_init__(self) -> None:
        if not 1 <= self.chunk_size <= MAX_CHUNK:
            raise ConfigError(f"chunk_size must be in 1..{MAX_CHUNK}, got {self.chunk_size}")
        for name in ("entry_bits", "noise_bits"):
            v = getattr(self, name)
            if not 2 <= v <= 32:
                raise ConfigError(f"{name} must be in 2..32, got {v}")
        if not 8 <= self.norm_bits <= 120:
            raise ConfigError(f"norm_bits must be in 8..120, got {self.norm_bits}")
        for name in ("bound2x", "bound2e"):
            v = getattr(self, name)
            if not 0 <= v < 2**self.norm_bits:
                raise ConfigError(f"{name} must be in [0, 2^norm_bits), got {v}")

    @property
    def value_bits(self) -> int:
        """Width of the one range check per entry: y = x + e with x of `entry_bits` and e of
        `noise_bits` bits lies in [-2^(w-1), 2^(w-1)) for w = max(entry_bits, noise_bits) + 1."""
        return max(self.entry_bits, self.noise_bits) + 1

    @property
    def bound2y(self) -> int:
        """The folded bound the circuit enforces on sum y^2: bound2x + bound2e + 2 floor(sqrt(
        bound2x bound2e)) <= (sqrt(bound2x) + sqrt(bound2e))^2. Complete: <x, e> is an integer
        at most ||x|| ||e|| <= sqrt(bound2x bound2e), so every honest y = x + e passes."""
        return self.bound2x + self.bound2e + 2 * math.isqrt(self.bound2x * self.bound2e)

    @property
    def circuit(self) -> Circuit:
        return Circuit(
            name=f"update3_n{self.chunk_size}_y{self.value_bits}_s{self.norm_bits}",
            source="update_chunk.circom",
            template="UpdateChunk",
            args=(self.chunk_size, self.value_bits, self.norm_bits, TAG_COMMIT, TAG_STATE),
            public=PUBLIC_INPUTS,
        )

    def n_chunks(self, dim: int) -> int:
        return max(1, -(-dim // self.chunk_size))


def _poseidon_constraints(n_inputs: int, constant_inputs: int = 0) -> int:
    """R1CS constraints of circomlib's Poseidon(n): x^5 S-boxes (3 constraints each) in 8 full rounds
    of width t = n + 1 and in the partial rounds; S-boxes of the first round whose input is a
    compile-time constant (the capacity element, constant tags, zero padding) cost nothing."""
    t = n_inputs + 1
    n_partial = (56, 57, 56, 60, 60, 63, 64, 63, 60, 66, 60, 65, 70, 60, 64, 68)[t - 2]
    return 3 * (8 * t + n_partial) - 3 * (1 + constant_inputs)


def _padded_sponge_constraints(elements: int) -> int:
    """The previous sponge (last block zero-padded to 15 elements), for `constraint_breakdown_before`."""
    blocks = -(-elements // 15)
    return blocks * _poseidon_constraints(16) - 3 * (blocks * 15 - elements)


def _sponge_constraints(elements: int) -> int:
    """`Sponge(elements)` with a constant domain: blocks of 15 elements chained through Poseidon(16), the last
    block in a Poseidon of its own width."""
    blocks = -(-elements // 15)
    widths = [15] * (blocks - 1) + [elements - 15 * (blocks - 1)]
    return sum(_poseidon_constraints(w + 1, 1 if b == 0 else 0) for b, w in enumerate(widths))


def _commitment_constraints(packed: int) -> int:
    """`ChunkCommit`: one sponge over (ctx, k, rho, packed elements) with the constant domain TAG_COMMIT."""
    return _sponge_constraints(packed + 3)


def constraint_breakdown(spec: UpdateSpec) -> dict[str, int]:
    """Where the update circuit's constraints go, per component (exact for `update_chunk.circom`:
    it reproduces the compiler's counts, checked against circom 2's .r1cs header in the tests)."""
    n, by, bs = spec.chunk_size, spec.value_bits, spec.norm_bits
    out = {
        "range_y": n * by,  # the one range check per entry
        "squares": n,
        "linear_form": n + 1,  # Horner, one per entry, and rOff * h[0]
        "commitment": _commitment_constraints(-(-n // (253 // by))),
        "running_states": 2 * _poseidon_constraints(7, 1),
        # sum range (BS), m range (BS), m^2 and bound2x * bound2e (2), m^2 <= bb (2 BS + 1),
        # sum <= folded bound (BS + 3), flags (2), first (2), last (3)
        "sums_and_bounds": 5 * bs + 13,
    }
    out["total"] = sum(out.values())
    out["per_entry_x1000"] = round(1000 * out["total"] / n)
    return out


def constraint_breakdown_before(spec: UpdateSpec) -> dict[str, int]:
    """The previous circuit's count (x and e range-checked, committed and normed separately):
    36-37 constraints per entry, kept for the before/after figure of `bench_zk`."""
    n, bx, be, bs = spec.chunk_size, spec.entry_bits, spec.noise_bits, spec.norm_bits
    npx, npe = -(-n // (253 // bx)), -(-n // (253 // be))
    out = {
        "range_x": n * bx,
        "range_e": n * be,
        "squares": 2 * n,
        "linear_form": n + 1,
        "commitment": _padded_sponge_constraints(npx + npe) + _poseidon_constraints(4, 1),
        "running_states": 2 * _poseidon_constraints(8, 1),
        "sums_and_bounds": 2 * bs + 2 * (bs + 1) + 8,
    }
    out["total"] = sum(out.values())
    out["per_entry_x1000"] = round(1000 * out["total"] / n)
    return out


# Prover cost model of the native path (witness in Python/numpy, groth16py 0.2.0 `prove_wtns` on
# one thread), CPU seconds measured on this machine: about 19 us per constraint (this circuit has
# as many wires as constraints: the MSMs and the witness), 7.9 us per point of the FFT domain (the
# next power of two at or above constraints + public inputs + 1) and 85 ms per chunk (the proof's
# fixed cost, the per-chunk hashes in the witness, the verification). Fitted on 512-, 700- and
# 1,024-entry chunks (0.46 s, 0.67 s, 0.80 s). The domain term is why a chunk just under a power
# of two costs less per entry than one just over it; the fixed term favours fewer, larger chunks.
# Fitted before the entries were shifted (u = y + 2^(BY-1): no full-size entry wire) and the commitment became
# one sponge; measured since, prover CPU is 6-10 % below the model (docs/zk.md, "Prover path"), a margin
# that leaves the plan's choices as they were, so the fit is kept as a conservative bound.
_SECONDS_PER_WIRE = 1.9e-5
_SECONDS_PER_DOMAIN_POINT = 7.9e-6
_SECONDS_PER_CHUNK = 0.085


def domain_size(spec: UpdateSpec) -> int:
    """The FFT domain of the Groth16 prover: constraints + public inputs + 1, rounded up to 2^k."""
    need = constraint_breakdown(spec)["total"] + len(PUBLIC_INPUTS) + 1
    return 1 << (need - 1).bit_length()


def modeled_chunk_seconds(spec: UpdateSpec) -> float:
    """Modeled single-core seconds to prove one chunk (see the cost model above)."""
    return (
        _SECONDS_PER_WIRE * constraint_breakdown(spec)["total"]
        + _SECONDS_PER_DOMAIN_POINT * domain_size(spec)
        + _SECONDS_PER_CHUNK
    )


def plan_chunk(dim: int, workers: int = 2, *, entry_bits: int = 16, noise_bits: int = 12, norm_bits: int = 64) -> int:
    """The chunk size that proves a `dim`-entry update fastest on `workers` single-threaded provers.

    Candidates split the update into a multiple of `workers` chunks (so no prover idles in the
    last wave); each is scored by waves x modeled seconds per chunk, which favours chunks that
    fill their power-of-two FFT domain.
    """
    if dim < 1 or workers < 1:
        raise ConfigError("dimension and workers must be positive")
    best: tuple[float, int] | None = None
    m = 1
    while True:
        n = -(-dim // (workers * m))
        if n <= MAX_CHUNK:
            spec = UpdateSpec(chunk_size=max(n, 1), entry_bits=entry_bits, noise_bits=noise_bits, norm_bits=norm_bits)
            waves = -(-spec.n_chunks(dim) // workers)
            t = waves * modeled_chunk_seconds(spec)
            if best is None or t < best[0] - 1e-9:
                best = (t, spec.chunk_size)
        if n <= 16:
            break
        m += 1
    assert best is not None
    return best[1]


@dataclass(frozen=True)
class ProofContext:
    """Who proves what: the field element every commitment and state of the proof is bound to."""

    task_id: str
    round_id: int
    member_id: str

    @property
    def element(self) -> int:
        return hash_to_field(
            "update/context", self.task_id.encode(), self.round_id.to_bytes(8, "big"), self.member_id.encode()
        )


@dataclass(frozen=True)
class UpdateSecret:
    """What the trainer keeps: the vectors and the commitment randomness. Never leaves the trainer."""

    x: np.ndarray
    e: np.ndarray
    t: int  # the linear-check blinding, also fed into the field coordinate of secure aggregation
    rhos: tuple[int, ...]  # one per chunk commitment
    salts: tuple[int, ...]  # one per running state (chunks + 1)


@dataclass(frozen=True)
class UpdateCommitment:
    """Posted (by hash) before the challenge: binds the vectors, t and the proof context."""

    ctx: int
    dim: int
    chunk_commits: tuple[int, ...]
    state0: int  # commitment to t with zero partial sums (first running state)

    def digest(self) -> bytes:
        parts = [int_bytes(self.ctx), self.dim.to_bytes(8, "big"), int_bytes(self.state0)]
        parts += [int_bytes(c) for c in self.chunk_commits]
        return domain_hash(Usage.UPDATE_COMMIT, *parts)


@dataclass(frozen=True)
class ChunkProof:
    index: int
    state_out: int
    proof: bytes


@dataclass(frozen=True)
class UpdateProof:
    """The proof bundle: chunk proofs chained by their (hidden) running states, and s."""

    s: int
    chunks: tuple[ChunkProof, ...]
    prove_seconds: float = field(default=0.0, compare=False)

    @property
    def size_bytes(self) -> int:
        return sum(len(c.proof) for c in self.chunks)


def _shifted_pack(v: np.ndarray, bits: int) -> list[int]:
    """Entries shifted to [0, 2^bits) and packed floor(253/bits) per field element, little end first."""
    per = 253 // bits
    off = np.asarray(v, dtype=np.int64) + (1 << (bits - 1))
    out = []
    vals = [int(a) for a in off.tolist()]
    for q in range(0, len(vals), per):
        acc = 0
        for i, a in enumerate(vals[q : q + per]):
            acc |= a << (bits * i)
        out.append(acc)
    return out


def commit_packed(ctx: int, k: int, rho: int, packed: list[int]) -> int:
    """The chunk commitment (`ChunkCommit` in update_chunk.circom) of packed shifted entries: one sponge with
    domain TAG_COMMIT over (ctx, k, rho, packed...). Every chunk commitment is computed here."""
    return sponge(TAG_COMMIT, [ctx % P, k % P, rho % P, *packed])


def chunk_commitment(spec: UpdateSpec, ctx: int, k: int, rho: int, x: np.ndarray, e: np.ndarray) -> int:
    """The Poseidon commitment the circuit recomputes for chunk k: to y = x + e, zero-padded."""
    n = spec.chunk_size
    yp = np.zeros(n, dtype=np.int64)
    yp[: len(x)] = np.asarray(x, dtype=np.int64) + np.asarray(e, dtype=np.int64)
    return commit_packed(ctx, k, rho, _shifted_pack(yp, spec.value_bits))


def running_state(ctx: int, k: int, sy: int, lin: int, t: int, salt: int) -> int:
    """The hidden running state after k chunks: (sum y^2, sum_j r^j y_j, t), salted."""
    return poseidon([TAG_STATE, ctx, k, sy, lin, t, salt])


def _check_vectors(spec: UpdateSpec, x: np.ndarray, e: np.ndarray) -> None:
    if x.ndim != 1 or e.shape != x.shape:
        raise DataError(f"x and e must be 1-d vectors of one length, got {x.shape} and {e.shape}")
    if len(x) == 0:
        raise DataError("cannot prove an empty update")
    for name, v, bits in (("x", x, spec.entry_bits), ("e", e, spec.noise_bits)):
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if v.min() < lo or v.max() > hi:
            raise DataError(f"an entry of {name} is outside [{lo}, {hi}] ({bits}-bit range)")
    xs = int(np.dot(x.astype(object), x.astype(object)))
    es = int(np.dot(e.astype(object), e.astype(object)))
    if xs > spec.bound2x:
        raise DataError(f"squared L2 norm of x is {xs}, over the bound {spec.bound2x}")
    if es > spec.bound2e:
        raise DataError(f"squared L2 norm of the noise share is {es}, over the bound {spec.bound2e}")


def commit_update(
    spec: UpdateSpec,
    ctx: ProofContext,
    x: np.ndarray,
    e: np.ndarray,
    rng: ByteSource,
    *,
    t: int | None = None,
    check: bool = True,
) -> tuple[UpdateSecret, UpdateCommitment]:
    """Commit to (x, e, t) chunk by chunk. `rng` supplies the hiding randomness (and t unless given): a
    secret stream, `Entropy.stream(Purpose.COMMITMENT, ...)` (fedledger.core.rng), never one derived from a
    public value.

    `check=False` skips the range and norm checks, only so tests can hand the circuit a
    witness that breaks a constraint.
    """
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(e, dtype=np.int64)
    if check:
        _check_vectors(spec, x, e)
    c = ctx.element
    n, kk = spec.chunk_size, spec.n_chunks(len(x))
    t = random_field(rng) if t is None else to_field(t)
    rhos = tuple(random_field(rng) for _ in range(kk))
    salts = tuple(random_field(rng) for _ in range(kk + 1))
    commits = tuple(
        chunk_commitment(spec, c, k, rhos[k], x[k * n : (k + 1) * n], e[k * n : (k + 1) * n]) for k in range(kk)
    )
    state0 = running_state(c, 0, 0, 0, t, salts[0])
    return UpdateSecret(x, e, t, rhos, salts), UpdateCommitment(c, len(x), commits, state0)


def chunk_public_inputs(
    spec: UpdateSpec, posted: UpdateCommitment, k: int, state_in: int, state_out: int, r: int, s: int
) -> list[int]:
    """The public inputs of chunk k, in circuit order, as a verifier assembles them."""
    kk = spec.n_chunks(posted.dim)
    last = k == kk - 1
    return [
        posted.ctx,
        k,
        int(k == 0),
        int(last),
        posted.chunk_commits[k],
        state_in,
        state_out,
        r,
        pow(r, k * spec.chunk_size, P),
        s if last else 0,
        spec.bound2x,
        spec.bound2e,
    ]


def chunk_witnesses(
    spec: UpdateSpec, secret: UpdateSecret, posted: UpdateCommitment, r: int
) -> tuple[int, list[dict[str, object]], list[int]]:
    """(s, circuit inputs per chunk, running states) for challenge r."""
    n, kk = spec.chunk_size, spec.n_chunks(posted.dim)
    c = posted.ctx
    y = np.zeros(kk * n, dtype=np.int64)
    y[: posted.dim] = np.asarray(secret.x, dtype=np.int64) + np.asarray(secret.e, dtype=np.int64)
    y = y.reshape(kk, n)
    # m = floor(sqrt(bound2x bound2e)): the witness of the folded bound (the largest m allowed)
    m = math.isqrt(spec.bound2x * spec.bound2e)
    off = 1 << (spec.value_bits - 1)
    sy = lin = 0
    states = [posted.state0]
    pending = []
    for k in range(kk):
        yk = y[k].tolist()
        sy_o = sy + sum(v * v for v in yk)
        h = 0
        for v in reversed(yk):
            h = (h + v) * r % P
        lin_o = (lin + pow(r, k * n, P) * h) % P
        states.append(running_state(c, k + 1, sy_o % P, lin_o, secret.t, secret.salts[k + 1]))
        pending.append((k, yk, sy, lin))
        sy, lin = sy_o, lin_o
    s = (lin + secret.t) % P
    inputs: list[dict[str, object]] = []
    for k, yk, syi, lini in pending:
        pub = chunk_public_inputs(spec, posted, k, states[k], states[k + 1], r, s)
        inp: dict[str, object] = dict(zip(PUBLIC_INPUTS, pub, strict=True))
        inp.update(
            u=[(v + off) % P for v in yk],  # the circuit's private input: y shifted to [0, 2^BY)
            rho=secret.rhos[k],
            syIn=syi % P,
            linIn=lini,
            t=secret.t,
            saltIn=secret.salts[k],
            saltOut=secret.salts[k + 1],
            m=m,
        )
        inputs.append(inp)
    return s, inputs, states


ENGINES = ("native", "groth16py")


def _chosen_engine(engine: str | None) -> str:
    """The prover asked for: `engine`, else $FEDLEDGER_PROVER, else "native"."""
    chosen = engine or os.environ.get("FEDLEDGER_PROVER") or "native"
    if chosen not in ENGINES:
        raise ConfigError(f"unknown prover {chosen!r}: choose one of {', '.join(ENGINES)}")
    return chosen


def _load_engine(keys: KeySet, chosen: str, explicit: bool) -> str:
    """Load the proving key into the chosen prover once; "native" falls back to groth16py only when
    not asked for explicitly and our prover cannot be built here (no g++)."""
    if chosen == "native":
        try:
            _ = keys.native_prover
            return "native"
        except ConfigError as err:
            if explicit:
                raise
            warnings.warn(f"{err}; proving with groth16py (slower)", RuntimeWarning, stacklevel=3)
    _ = keys.pk
    return "groth16py"


class UpdateProver:
    """A long-lived prover: keys loaded once, chunks proved in parallel.

    Native path (when circom2 is available to lay out the wires once per circuit, see
    `fedledger.zk.witness`): the calling thread computes each chunk's full witness natively
    (`update_signals`, numpy for the per-entry part) and hands it to `workers` prover threads,
    which release the GIL; witness generation of chunk k+1 overlaps the proof of chunk k, and one
    proving key is loaded once for all threads. The threads run `engine`: "native", our own
    prover (`fedledger.zk.native_groth16`, the default where g++ can build it), or "groth16py"
    (`prove_wtns` on the witness written as a `.wtns` file). `FEDLEDGER_PROVER=groth16py` sets the
    default. Fallback: groth16py's `prove` (witness by its wasm interpreter, holding the GIL), so
    parallelism comes from processes (`ProverPool`, each loads the key once).
    `workers = None` takes one per core. `native=False` forces the fallback.
    """

    def __init__(
        self,
        spec: UpdateSpec,
        backend: Groth16Backend | None = None,
        *,
        workers: int | None = 1,
        native: bool = True,
        engine: str | None = None,
    ):
        chosen = _chosen_engine(engine)
        self.spec = spec
        self.backend = backend or Groth16Backend()
        self.keys: KeySet = self.backend.keys(spec.circuit)
        self.workers = max(1, os.cpu_count() or 1) if workers is None else max(1, workers)
        self._pool: ProverPool | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._plan: WitnessPlan | None = None
        self._cpu = 0.0
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(2 * self.workers + 1)
        if native:
            try:
                self._plan = build_plan(spec.circuit.main, [str(CIRCUIT_DIR), circomlib_dir()], self.keys.directory)
            except ConfigError:
                self._plan = None
        self.engine: str | None = None
        if self._plan is not None and self._plan.n_constraints == constraint_breakdown(spec)["total"]:
            self.engine = _load_engine(self.keys, chosen, explicit=engine is not None)
            self._threads = ThreadPoolExecutor(self.workers, thread_name_prefix="zk-prover")
        else:
            self._plan = None
            self._pool = ProverPool(self.keys, self.workers)

    @property
    def native(self) -> bool:
        """Whether witnesses are generated natively and proved on threads (by `engine`)."""
        return self._plan is not None

    @property
    def cpu_seconds(self) -> float:
        """CPU seconds spent on proofs so far: witness threads and prover threads (native path), or the prover
        processes (fallback). Unlike wall time it does not depend on what else the machine runs."""
        with self._lock:
            return self._cpu

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._threads is not None:
            self._threads.shutdown(wait=True)
            self._threads = None

    def __enter__(self) -> UpdateProver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _counted(self, prove: Callable[..., bytes], *args: object) -> bytes:
        c0 = time.thread_time()  # this prover thread's CPU: the prover's MSMs and FFTs, then the check
        try:
            return prove(self.keys, *args)
        finally:
            with self._lock:
                self._cpu += time.thread_time() - c0

    def _release(self, path: str | None) -> None:
        """A chunk is done (proved, failed or cancelled): its witness file (if any) and its slot are free."""
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._slots.release()

    def _submit_chunk(self, inp: Mapping[str, object]) -> Future[bytes]:
        """Compute one chunk's witness in the calling thread and queue its proof on the prover threads.
        At most `2 workers + 1` witnesses wait in /dev/shm: a caller that submits many updates at once
        blocks here (its witnesses run ahead of the provers by that much, not by the whole batch)."""
        if self._threads is None or self._plan is None:
            raise ConfigError("this prover is closed")
        c0 = time.thread_time()
        wit = self._plan.witness(update_signals(self.spec, inp))
        path: str | None = None
        if self.engine == "native":
            job = functools.partial(self._counted, prove_native_checked, inp, wit)
        else:
            tmpdir = "/dev/shm" if os.path.isdir("/dev/shm") else None
            fd, path = tempfile.mkstemp(suffix=".wtns", dir=tmpdir)
            os.close(fd)
            write_wtns(Path(path), wit)
            job = functools.partial(self._counted, prove_wtns_checked, inp, path)
        with self._lock:
            self._cpu += time.thread_time() - c0
        self._slots.acquire()
        try:
            fut = self._threads.submit(job)
        except BaseException:
            self._release(path)
            raise
        fut.add_done_callback(lambda _: self._release(path))
        return fut

    def prove_chunks(self, inputs: Iterable[Mapping[str, object]]) -> list[bytes]:
        if self._pool is not None:
            c0 = self._pool.cpu_seconds
            out = [proof for proof, _ in self._pool.prove_many(list(inputs))]
            with self._lock:
                self._cpu += self._pool.cpu_seconds - c0
            return out
        futures: list[Future[bytes]] = []
        try:
            for inp in inputs:  # witness k+1 is computed while the threads prove chunk k
                futures.append(self._submit_chunk(inp))
            return [f.result() for f in futures]
        finally:
            for f in futures:
                f.cancel()

    def submit_update(self, secret: UpdateSecret, posted: UpdateCommitment, r: int) -> Future[UpdateProof]:
        """Start proving an update for challenge r; the proof arrives in the returned future.

        The witnesses are computed here, in the calling thread, and the chunk proofs queue on the prover
        threads, so the witnesses of the next update overlap the proofs of this one. Whoever proves many
        updates on one machine (a simulation's members) submits them all, then collects: every core proves
        while one thread computes witnesses. `prove_update` is `submit_update(...).result()`. A chunk whose
        witness breaks a constraint fails the future with ProvingError.
        """
        if not 0 < r < P:
            raise ConfigError("the challenge must be a non-zero field element")
        t0 = time.perf_counter()
        s, inputs, states = chunk_witnesses(self.spec, secret, posted, r)
        if self._pool is not None:  # interpreter fallback: its processes prove the chunks now
            done: Future[UpdateProof] = Future()
            try:
                proofs = self.prove_chunks(inputs)
            except BaseException as err:
                done.set_exception(err)
                return done
            chunks = tuple(ChunkProof(k, states[k + 1], p) for k, p in enumerate(proofs))
            done.set_result(UpdateProof(s=s, chunks=chunks, prove_seconds=time.perf_counter() - t0))
            return done
        futures: list[Future[bytes]] = []
        try:
            for inp in inputs:
                futures.append(self._submit_chunk(inp))
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        return _gather(futures, lambda proofs: UpdateProof(
            s=s, chunks=tuple(ChunkProof(k, states[k + 1], p) for k, p in enumerate(proofs)),
            prove_seconds=time.perf_counter() - t0))

    def prove_update(self, secret: UpdateSecret, posted: UpdateCommitment, r: int) -> UpdateProof:
        return self.submit_update(secret, posted, r).result()


def _gather(futures: list[Future[bytes]], make: Callable[[list[bytes]], UpdateProof]) -> Future[UpdateProof]:
    """One future for a list of chunk futures: `make(results)` once all succeed, the first error otherwise."""
    out: Future[UpdateProof] = Future()
    left = [len(futures)]
    lock = threading.Lock()

    def done(f: Future[bytes]) -> None:
        with lock:
            if out.done():
                return
            if f.cancelled() or f.exception() is not None:
                out.set_exception(f.exception() if not f.cancelled() else ProvingError("chunk proof cancelled"))
                return
            left[0] -= 1
            if left[0]:
                return
        try:
            out.set_result(make([g.result() for g in futures]))
        except BaseException as err:  # pragma: no cover - make() only builds dataclasses
            out.set_exception(err)

    for f in futures:
        f.add_done_callback(done)
    return out


def verify_update(
    keys: KeySet,
    spec: UpdateSpec,
    posted: UpdateCommitment,
    proof: UpdateProof,
    r: int,
    *,
    backend: type[Groth16Backend] = Groth16Backend,
) -> None:
    """Raise InvalidProof unless every chunk verifies and the chunks chain from `posted.state0`.

    The verifier fixes the context, chunk indices, first/last flags, r^offset and the bounds
    itself; the prover supplies only the proofs, the intermediate states and s.
    """
    if keys.circuit != spec.circuit:
        raise InvalidProof("keys are for another circuit than the task's update spec")
    kk = spec.n_chunks(posted.dim)
    if len(posted.chunk_commits) != kk:
        raise InvalidProof(f"commitment has {len(posted.chunk_commits)} chunks, dimension needs {kk}")
    if len(proof.chunks) != kk:
        raise InvalidProof(f"proof has {len(proof.chunks)} chunks, expected {kk}")
    if not 0 < r < P or not 0 <= proof.s < P:
        raise InvalidProof("challenge or linear-check value is not a field element")
    state_in = posted.state0
    for k, ch in enumerate(proof.chunks):
        if ch.index != k:
            raise InvalidProof(f"chunk {ch.index} found where chunk {k} belongs")
        if not 0 <= ch.state_out < P:
            raise InvalidProof(f"chunk {k}: running state is not a field element")
        pub = chunk_public_inputs(spec, posted, k, state_in, ch.state_out, r, proof.s)
        try:
            backend.verify(keys, ch.proof, pub)
        except InvalidProof as err:
            raise InvalidProof(f"update proof, chunk {k} of {kk}: {err}") from err
        state_in = ch.state_out


# -- wire form --------------------------------------------------------------------------------

_BUNDLE_KEYS = {"version", "spec", "commitment", "challenge", "proof"}


def bundle_to_json(spec: UpdateSpec, posted: UpdateCommitment, proof: UpdateProof, r: int) -> dict[str, object]:
    """A self-describing JSON form of (spec, commitment, challenge, proof); field elements as hex."""
    return {
        "version": 1,
        "spec": dict(spec.__dict__),
        "commitment": {
            "ctx": hex(posted.ctx),
            "dim": posted.dim,
            "chunk_commits": [hex(c) for c in posted.chunk_commits],
            "state0": hex(posted.state0),
        },
        "challenge": hex(r),
        "proof": {
            "s": hex(proof.s),
            "chunks": [{"index": c.index, "state_out": hex(c.state_out), "proof": c.proof.hex()} for c in proof.chunks],
            "prove_seconds": proof.prove_seconds,
        },
    }


def _felt(v: object) -> int:
    if not isinstance(v, str) or not v.startswith("0x"):
        raise InvalidProof(f"expected a 0x-hex field element, got {v!r}")
    n = int(v, 16)
    if not 0 <= n < P:
        raise InvalidProof("field element out of range")
    return n


def bundle_from_json(d: Mapping[str, object]) -> tuple[UpdateSpec, UpdateCommitment, UpdateProof, int]:
    """Inverse of bundle_to_json; rejects unknown or missing keys and malformed values."""
    try:
        if set(d) != _BUNDLE_KEYS or d["version"] != 1:
            raise InvalidProof(f"not an update-proof bundle (keys {sorted(d)})")
        spec = UpdateSpec(**d["spec"])  # type: ignore[arg-type]
        c = d["commitment"]
        assert isinstance(c, dict) and set(c) == {"ctx", "dim", "chunk_commits", "state0"}
        posted = UpdateCommitment(
            _felt(c["ctx"]), int(c["dim"]), tuple(_felt(v) for v in c["chunk_commits"]), _felt(c["state0"])
        )
        p = d["proof"]
        assert isinstance(p, dict) and set(p) == {"s", "chunks", "prove_seconds"}
        chunks = []
        for ch in p["chunks"]:
            assert set(ch) == {"index", "state_out", "proof"}
            chunks.append(ChunkProof(int(ch["index"]), _felt(ch["state_out"]), bytes.fromhex(ch["proof"])))
        proof = UpdateProof(_felt(p["s"]), tuple(chunks), float(p["prove_seconds"]))
        return spec, posted, proof, _felt(d["challenge"])
    except (AssertionError, KeyError, TypeError, ValueError) as e:
        if isinstance(e, InvalidProof):
            raise
        raise InvalidProof(f"malformed update-proof bundle: {e}") from e


# -- native witness ---------------------------------------------------------------------------

_PRIVATE_INPUTS = ("u", "rho", "syIn", "linIn", "t", "saltIn", "saltOut", "m")


def _bits(out: dict[str, int], prefix: str, value: int, width: int) -> None:
    value %= P
    out[f"{prefix}.in"] = value
    for i in range(width):
        out[f"{prefix}.out[{i}]"] = (value >> i) & 1


def _less_eq(out: dict[str, int], prefix: str, a: int, b: int, n: int) -> None:
    """circomlib LessEqThan(n) = LessThan(n) on (a, b + 1), LessThan through Num2Bits(n + 1)."""
    a, b1 = a % P, (b + 1) % P
    out[f"{prefix}.in[0]"], out[f"{prefix}.in[1]"] = a, b % P
    out[f"{prefix}.lt.in[0]"], out[f"{prefix}.lt.in[1]"] = a, b1
    _bits(out, f"{prefix}.lt.n2b", a + (1 << n) - b1, n + 1)
    out[f"{prefix}.lt.out"] = out[f"{prefix}.out"] = 1 - out[f"{prefix}.lt.n2b.out[{n}]"]


@functools.cache
def _entry_names(n: int, by: int) -> dict[str, list[str]]:
    """The per-entry signal names of a chunk circuit, formatted once per shape."""
    return {
        "u": [f"main.u[{j}]" for j in range(n)],
        "ry_in": [f"main.ry[{j}].in" for j in range(n)],
        "ry_out": [f"main.ry[{j}].out[{i}]" for j in range(n) for i in range(by)],
        "sq": [f"main.sq[{j}]" for j in range(n)],
        "h": [f"main.h[{j}]" for j in range(n + 1)],
    }


def update_signals(spec: UpdateSpec, inp: Mapping[str, object]) -> dict[str, int]:
    """Every signal of `update_chunk.circom` for one chunk's input assignment, by circom name,
    computed as the circuit computes it (the Python twin of the circuit, for the native witness;
    a wrong value only makes the proof fail verification, which the prover checks)."""
    n, by, bs = spec.chunk_size, spec.value_bits, spec.norm_bits
    names = _entry_names(n, by)
    out: dict[str, int] = {}
    for name in PUBLIC_INPUTS + _PRIVATE_INPUTS[1:]:
        out[f"main.{name}"] = int(inp[name]) % P  # type: ignore[call-overload]
    g = {k: out[f"main.{k}"] for k in PUBLIC_INPUTS + _PRIVATE_INPUTS[1:]}
    u = [int(a) % P for a in inp["u"]]  # type: ignore[union-attr]
    out.update(zip(names["u"], u, strict=True))
    off = 1 << (by - 1)
    y = [(v - off) % P for v in u]  # the entries, as field elements
    if all(0 <= v < 2 * off for v in u):  # the honest case: bits with numpy
        sh = np.asarray(u, dtype=np.int64)
        out.update(zip(names["ry_in"], u, strict=True))
        bits = ((sh[:, None] >> np.arange(by, dtype=np.int64)) & 1).ravel().tolist()
        out.update(zip(names["ry_out"], bits, strict=True))
        sq = [(v - off) * (v - off) for v in u]
    else:
        for j in range(n):
            _bits(out, f"main.ry[{j}]", u[j], by)
        sq = [v * v % P for v in y]
    out.update(zip(names["sq"], sq, strict=True))
    sy = (g["syIn"] + sum(sq)) % P
    out["main.syOut"] = sy
    r = g["r"]
    h = 0
    hs = [0] * (n + 1)
    for j in range(n - 1, -1, -1):
        h = (h + y[j]) * r % P
        hs[j] = h
    out.update(zip(names["h"], hs, strict=True))
    lin = (g["linIn"] + g["rOff"] * h) % P
    out["main.linOut"] = lin
    # commitment: one sponge over (ctx, k, rho, packed u) with domain TAG_COMMIT
    per = 253 // by
    elems = [sum(u[q + i] << (by * i) for i in range(min(per, n - q))) % P for q in range(0, n, per)]
    absorbed = [g["ctx"], g["k"], g["rho"], *elems]
    out["main.cc.sp.domain"] = TAG_COMMIT
    for q, v in enumerate(elems):
        out[f"main.cc.packed[{q}]"] = v
    for q, v in enumerate(absorbed):
        out[f"main.cc.sp.in[{q}]"] = v
    acc = TAG_COMMIT
    for b in range(0, len(absorbed), 15):
        acc = poseidon_signals(f"main.cc.sp.h[{b // 15}]", [acc, *absorbed[b : b + 15]], out)
    out["main.cc.sp.out"] = out["main.cc.out"] = acc
    # running states
    poseidon_signals("main.hin", [TAG_STATE, g["ctx"], g["k"], g["syIn"], g["linIn"], g["t"], g["saltIn"]], out)
    poseidon_signals("main.hout", [TAG_STATE, g["ctx"], g["k"] + 1, sy, lin, g["t"], g["saltOut"]], out)
    # sums and bounds
    m, bx, be = g["m"], g["bound2x"], g["bound2e"]
    _bits(out, "main.bsy", sy, bs)
    _bits(out, "main.bm", m, bs)
    out["main.m2"], out["main.bb"] = m * m % P, bx * be % P
    _less_eq(out, "main.okm", out["main.m2"], out["main.bb"], 2 * bs)
    _less_eq(out, "main.oky", sy, bx + be + 2 * m, bs + 2)
    return out
