"""One small interface over the Groth16 toolchain, and the key store.

`Groth16Backend` is the only code that touches `groth16py`: setup (single-party, for
development), import of a snarkjs ceremony `.zkey` (production), prove, verify and export of
the Vyper verifier. Everything above it speaks `Circuit`, `KeySet`, bytes and ints.

Keys are cached by circuit hash (SHA-256 over the groth16py version, the rendered main
component and every circom source it can include) under `$FEDLEDGER_CACHE/zk` or
`~/.cache/fedledger/zk`, never in the repository. A single-party setup knows its toxic waste:
whoever ran it can forge proofs. It is therefore recorded as `development_only` in
`setup.json` next to the keys, and every load emits `DevelopmentSetupWarning`.

Keys live per machine, so nothing in a key directory says which setup a task uses: a task commits the
SHA-256 of its verifying key (`KeySet.vk_hash`, over the key's canonical JSON) in its spec, whose hash is on
chain, and whoever verifies for the task checks its keys against it first (`require_task_keys`). A proof made
for another key (another party's own setup, whose toxic waste that party may know) then never counts.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import groth16py

from fedledger.core.errors import ConfigError
from fedledger.zk.errors import InvalidProof, KeyMismatch, ProvingError, SetupRequired
from fedledger.zk.field import P
from fedledger.zk.poseidon import circomlib_dir

CIRCUIT_DIR = Path(__file__).parent / "circuits"
DEV_BANNER = (
    "DEVELOPMENT-ONLY KEYS: single-party Groth16 setup; whoever ran it can forge proofs. "
    "Import ceremony keys (`fedledger zk setup --zkey`) for anything of value."
)


class DevelopmentSetupWarning(UserWarning):
    """Keys from a single-party setup are in use."""


@dataclass(frozen=True)
class Circuit:
    """A circom template instantiated with parameters; `main` renders the main component."""

    name: str
    source: str  # file name under circuits/
    template: str
    args: tuple[int, ...]
    public: tuple[str, ...]

    @property
    def main(self) -> str:
        args = ", ".join(str(a) for a in self.args)
        pub = ", ".join(self.public)
        return (
            "pragma circom 2.1.0;\n"
            f'include "{self.source}";\n'
            f"component main {{public [{pub}]}} = {self.template}({args});\n"
        )

    @functools.cached_property
    def digest(self) -> str:
        """SHA-256 over the groth16py version, the main component and every file it includes."""
        h = hashlib.sha256()
        h.update(f"groth16py={groth16py.__version__}\n".encode())
        h.update(self.main.encode())
        for path in _included_files(self.source):
            h.update(path.name.encode())
            h.update(path.read_bytes())
        return h.hexdigest()


_INCLUDE = re.compile(r'^\s*include\s+"([^"]+)"\s*;', re.M)


def _resolve(name: str) -> Path:
    for d in (CIRCUIT_DIR, Path(circomlib_dir())):
        if (d / name).exists():
            return (d / name).resolve()
    raise ConfigError(f"circuit include {name!r} not found")


def _included_files(source: str) -> list[Path]:
    """The source and everything it includes, transitively, in a stable order."""
    seen: dict[Path, None] = {}
    stack = [_resolve(source)]
    while stack:
        path = stack.pop()
        if path in seen:
            continue
        seen[path] = None
        text = path.read_text()
        for inc in _INCLUDE.findall(text):
            stack.append(_resolve(inc) if "/" not in inc else (path.parent / inc).resolve())
    return sorted(seen, key=lambda p: (p.parent.name, p.name))


def cache_root() -> Path:
    """`$FEDLEDGER_CACHE/zk`, else `~/.cache/fedledger/zk` (the only place keys are written)."""
    base = os.environ.get("FEDLEDGER_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "fedledger"
    return root / "zk"


@dataclass(frozen=True)
class SetupRecord:
    """How a key pair came to be; written as setup.json beside the keys."""

    circuit: str
    circuit_digest: str
    kind: str  # "single-party-dev" | "ceremony"
    development_only: bool
    created_unix: float
    seconds: float
    constraints_note: str = ""
    zkey_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class KeySet:
    """Keys of one circuit. The proving key loads lazily (it is large); the verifier is prepared once."""

    circuit: Circuit
    directory: Path
    record: SetupRecord
    vk: groth16py.VerifyingKey
    _pk: groth16py.ProvingKey | None = field(default=None, repr=False)
    _verifier: groth16py.Verifier | None = field(default=None, repr=False)

    @property
    def development_only(self) -> bool:
        return self.record.development_only

    @property
    def n_public(self) -> int:
        return int(self.vk.n_public)

    @functools.cached_property
    def vk_hash(self) -> str:
        """What a task commits to in its spec: `verifying_key_hash(self.vk)`."""
        return verifying_key_hash(self.vk)

    @property
    def pk(self) -> groth16py.ProvingKey:
        if self._pk is None:
            self._pk = groth16py.ProvingKey.load(str(self.directory / "pk.bin"))
        return self._pk

    @property
    def verifier(self) -> groth16py.Verifier:
        if self._verifier is None:
            self._verifier = groth16py.Verifier(self.vk)
        return self._verifier


def verifying_key_hash(vk: groth16py.VerifyingKey) -> str:
    """SHA-256 (hex) of a verifying key's canonical JSON (keys sorted, no spaces): the same for the same key on
    every machine, different for every other setup of the same circuit."""
    canonical = json.dumps(json.loads(vk.to_json()), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def require_task_keys(keys: KeySet, committed: str | None) -> None:
    """Raise `KeyMismatch` unless `keys` are the ones a task committed to (`committed`: the verifying-key hash in
    its spec). `None`: the task committed none (a spec from before the binding), nothing to check against."""
    if committed is None:
        return
    if not isinstance(committed, str) or keys.vk_hash != committed.lower():
        raise KeyMismatch(
            f"the verifying key of {keys.circuit.name} here ({keys.vk_hash[:16]}..., {keys.directory}) is not the "
            f"one the task committed to ({str(committed)[:16]}...): import the task's keys, do not verify with these"
        )


class Groth16Backend:
    """Groth16 on BN254 via groth16py (arkworks prover, in-process circom 2 compiler)."""

    name = "groth16py"

    def __init__(self, cache_dir: Path | None = None, *, allow_dev_setup: bool = True) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else cache_root()
        self.allow_dev_setup = allow_dev_setup

    # -- keys -------------------------------------------------------------------------------

    def key_dir(self, circuit: Circuit) -> Path:
        return self.cache_dir / f"{circuit.name}-{circuit.digest[:16]}"

    def keys(self, circuit: Circuit) -> KeySet:
        """Load the cached keys of `circuit`, running a development setup if none exist yet."""
        d = self.key_dir(circuit)
        if not (d / "setup.json").exists():
            if not self.allow_dev_setup:
                raise SetupRequired(
                    f"no keys for circuit {circuit.name} ({circuit.digest[:16]}); "
                    "run `fedledger zk setup` or import ceremony keys"
                )
            return self.setup(circuit)
        return self._load(circuit)

    def setup(self, circuit: Circuit, *, force: bool = False) -> KeySet:
        """Single-party setup: DEVELOPMENT ONLY (the toxic waste is known to this process)."""
        d = self.key_dir(circuit)
        with self._locked(d):
            if force or not (d / "setup.json").exists():
                # said before the (long) setup; `_load` repeats it, and the CLI prints each warning text once
                warnings.warn(f"{DEV_BANNER} (circuit {circuit.name})", DevelopmentSetupWarning, stacklevel=3)
                t0 = time.perf_counter()
                with tempfile.TemporaryDirectory() as tmp:
                    main = Path(tmp) / f"{circuit.name}.circom"
                    main.write_text(circuit.main)
                    try:
                        with _quiet_stdout():
                            pk, vk = groth16py.setup_circom(str(main), [str(CIRCUIT_DIR), circomlib_dir()])
                    except Exception as e:  # groth16py raises its own SetupError or RuntimeError
                        raise ConfigError(f"circuit {circuit.name} does not compile: {e}") from e
                rec = SetupRecord(
                    circuit=circuit.name,
                    circuit_digest=circuit.digest,
                    kind="single-party-dev",
                    development_only=True,
                    created_unix=time.time(),
                    seconds=time.perf_counter() - t0,
                )
                self._store(d, pk, vk, rec)
        return self._load(circuit)

    def import_ceremony(self, circuit: Circuit, zkey_path: Path) -> KeySet:
        """Production path: keys from a snarkjs phase-2 ceremony `.zkey` for exactly this circuit."""
        d = self.key_dir(circuit)
        zkey_hash = hashlib.sha256(Path(zkey_path).read_bytes()).hexdigest()
        with self._locked(d):
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                main = Path(tmp) / f"{circuit.name}.circom"
                main.write_text(circuit.main)
                try:
                    with _quiet_stdout():
                        pk, vk = groth16py.import_zkey(str(zkey_path), str(main), [str(CIRCUIT_DIR), circomlib_dir()])
                except Exception as e:
                    raise ConfigError(f"cannot import {zkey_path} for {circuit.name}: {e}") from e
            rec = SetupRecord(
                circuit=circuit.name,
                circuit_digest=circuit.digest,
                kind="ceremony",
                development_only=False,
                created_unix=time.time(),
                seconds=time.perf_counter() - t0,
                zkey_sha256=zkey_hash,
            )
            self._store(d, pk, vk, rec)
        return self._load(circuit)

    def _store(self, d: Path, pk: Any, vk: Any, rec: SetupRecord) -> None:
        d.mkdir(parents=True, exist_ok=True)
        for name, obj in (("pk.bin", pk), ("vk.bin", vk)):
            tmp = d / f".{name}.tmp"
            obj.save(str(tmp))
            os.replace(tmp, d / name)
        (d / "vk.json").write_text(vk.to_json())
        tmp = d / ".setup.json.tmp"
        tmp.write_text(json.dumps(rec.to_json(), indent=2))
        os.replace(tmp, d / "setup.json")

    def _load(self, circuit: Circuit) -> KeySet:
        d = self.key_dir(circuit)
        raw = json.loads((d / "setup.json").read_text())
        rec = SetupRecord(**raw)
        if rec.circuit_digest != circuit.digest:
            raise ConfigError(f"key directory {d} holds keys for another circuit")
        if rec.development_only:
            warnings.warn(f"{DEV_BANNER} (circuit {circuit.name})", DevelopmentSetupWarning, stacklevel=3)
        vk = groth16py.VerifyingKey.load(str(d / "vk.bin"))
        return KeySet(circuit=circuit, directory=d, record=rec, vk=vk)

    @contextlib.contextmanager
    def _locked(self, d: Path) -> Iterator[None]:
        d.mkdir(parents=True, exist_ok=True)
        with open(d / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- proofs -----------------------------------------------------------------------------

    @staticmethod
    def prove(keys: KeySet, inputs: Mapping[str, object]) -> bytes:
        """A 256-byte proof (Ethereum layout). Raises ProvingError if the witness breaks a constraint.

        The arkworks prover does not check that the witness satisfies the constraints (a bad
        witness yields a proof that simply fails to verify), so every proof is verified here
        before it leaves the prover (about 2 ms).
        """
        return prove_checked(keys.pk, keys.verifier, keys.circuit, inputs)

    @staticmethod
    def verify(keys: KeySet, proof: bytes, public: Sequence[int]) -> None:
        """Raise InvalidProof unless `proof` verifies for `public` under the circuit's key."""
        if len(public) != keys.n_public:
            raise InvalidProof(f"{keys.circuit.name}: expected {keys.n_public} public inputs, got {len(public)}")
        if any(not 0 <= int(v) < P for v in public):
            raise InvalidProof(f"{keys.circuit.name}: a public input is not a canonical field element")
        try:
            ok = keys.verifier.verify(bytes(proof), [int(v) for v in public])
        except (groth16py.EncodingError, groth16py.VerificationError, ValueError) as e:
            raise InvalidProof(f"{keys.circuit.name}: malformed proof: {e}") from e
        if ok is not True:
            raise InvalidProof(f"{keys.circuit.name}: proof does not verify")

    @staticmethod
    def export_vyper(keys: KeySet) -> str:
        """A Vyper 0.4 Groth16 verifier over the BN254 precompiles for this circuit's key."""
        return str(keys.vk.to_vyper(pragma="~=0.4.3", contract_name=keys.circuit.name, style="snarkjs"))


def public_values(circuit: Circuit, inputs: Mapping[str, object]) -> list[int]:
    """The public inputs, in circuit order, read from a full input assignment."""
    out: list[int] = []
    for name in circuit.public:
        v = inputs[name]
        stack = [v]
        while stack:
            item = stack.pop(0)
            if isinstance(item, (list, tuple)):
                stack = list(item) + stack
            else:
                out.append(int(item) % P)  # type: ignore[call-overload]
    return out


def prove_checked(
    pk: groth16py.ProvingKey, verifier: groth16py.Verifier, circuit: Circuit, inputs: Mapping[str, object]
) -> bytes:
    """Prove, then verify the proof against the inputs' public values; ProvingError if it fails."""
    try:
        proof = bytes(groth16py.prove(pk, dict(inputs)))
    except groth16py.WitnessError as e:
        raise ProvingError(f"{circuit.name}: witness does not satisfy the circuit: {e}") from None
    if verifier.verify(proof, public_values(circuit, inputs)) is not True:
        raise ProvingError(f"{circuit.name}: witness does not satisfy the circuit (proof does not verify)")
    return proof


def prove_wtns_checked(
    pk: groth16py.ProvingKey, verifier: groth16py.Verifier, circuit: Circuit, inputs: Mapping[str, object],
    wtns_path: str,
) -> bytes:
    """Prove from a full witness file (`groth16py.prove_wtns`: no wasm, releases the GIL), then
    verify against the inputs' public values; ProvingError if the witness breaks a constraint."""
    try:
        proof = bytes(groth16py.prove_wtns(pk, wtns_path))
    except Exception as e:  # groth16py's own errors for a malformed witness file
        raise ProvingError(f"{circuit.name}: cannot prove from the witness: {e}") from None
    if verifier.verify(proof, public_values(circuit, inputs)) is not True:
        raise ProvingError(f"{circuit.name}: witness does not satisfy the circuit (proof does not verify)")
    return proof


def wtns_tempfile() -> str:
    """A fresh, empty `.wtns` file for one proof's witness, in /dev/shm where there is one (the hand-off to
    `prove_wtns` is a file; in memory it costs about 1 ms per 12,500 wires). The caller unlinks it."""
    fd, path = tempfile.mkstemp(suffix=".wtns", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    os.close(fd)
    return path


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """The circom compiler prints statistics, with terminal colour codes, on fd 1: keep them off our CLI's
    stdout and pass them on to stderr as plain `circom: ...` lines."""
    fd = 1  # the compiler writes to the process's fd 1, whatever sys.stdout is
    with contextlib.suppress(AttributeError, OSError, ValueError):
        sys.stdout.flush()
    try:
        saved = os.dup(fd)
    except OSError:  # no fd 1 at all
        yield
        return
    with tempfile.TemporaryFile() as captured:
        try:
            os.dup2(captured.fileno(), fd)
            yield
        finally:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                sys.stdout.flush()
            os.dup2(saved, fd)
            os.close(saved)
            captured.seek(0)
            text = _ANSI.sub("", captured.read().decode("utf-8", "replace"))
            lines = [f"circom: {line.strip()}" for line in text.splitlines() if line.strip()]
            if lines:
                print("\n".join(lines), file=sys.stderr, flush=True)


def proof_to_snarkjs(proof: bytes) -> dict[str, Any]:
    """The snarkjs `proof.json` form of a proof in the Ethereum 256-byte layout.

    Layout: A.x A.y | B.x.c1 B.x.c0 B.y.c1 B.y.c0 | C.x C.y, 32-byte big-endian words (the EVM
    precompile order, imaginary part first); snarkjs stores Fp2 as [c0, c1].
    """
    if len(proof) != 256:
        raise InvalidProof(f"a Groth16 proof is 256 bytes, got {len(proof)}")
    w = [str(int.from_bytes(proof[i : i + 32], "big")) for i in range(0, 256, 32)]
    return {
        "pi_a": [w[0], w[1], "1"],
        "pi_b": [[w[3], w[2]], [w[5], w[4]], ["1", "0"]],
        "pi_c": [w[6], w[7], "1"],
        "protocol": "groth16",
        "curve": "bn128",
    }


def proof_words(proof: bytes) -> tuple[list[int], list[list[int]], list[int]]:
    """(a, b, c) as the snarkjs-style Vyper/Solidity verifier's `verifyProof(a, b, c, input)` takes them."""
    if len(proof) != 256:
        raise InvalidProof(f"a Groth16 proof is 256 bytes, got {len(proof)}")
    w = [int.from_bytes(proof[i : i + 32], "big") for i in range(0, 256, 32)]
    return [w[0], w[1]], [[w[2], w[3]], [w[4], w[5]]], [w[6], w[7]]


# -- long-lived provers ---------------------------------------------------------------------------

_POOL_KEYS: dict[str, tuple[Any, Any]] = {}
_POOL_WITNESS: dict[str, Callable[[Mapping[str, object]], list[int]]] = {}
_POOL_READY: list[Any] = []  # the pool's shared count of workers that have loaded their keys and taken a task


def _pool_init(
    key_dir: str, threads: int, witness: Callable[[Mapping[str, object]], list[int]] | None, ready: Any
) -> None:
    """Worker initializer: load the keys of one circuit once, before any proof (and, with `witness`, the module
    that computes its witnesses natively).

    groth16py 0.2.0 is built without a thread pool (its prover runs on one thread; no rayon in the
    extension), so a worker per core is how a machine's cores are used; RAYON_NUM_THREADS would keep a
    parallel build from oversubscribing them.
    """
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    pk = groth16py.ProvingKey.load(os.path.join(key_dir, "pk.bin"))
    vk = groth16py.VerifyingKey.load(os.path.join(key_dir, "vk.bin"))
    _POOL_KEYS[key_dir] = (pk, groth16py.Verifier(vk))
    if witness is not None:
        _POOL_WITNESS[key_dir] = witness
    _POOL_READY[:] = [ready]


def _prove_one(
    pk: Any, verifier: Any, circuit: Circuit, inputs: Mapping[str, object],
    witness: Callable[[Mapping[str, object]], list[int]] | None,
) -> bytes:
    """One checked proof: the witness natively by `witness` and `prove_wtns`, else groth16py's `prove` (wasm)."""
    if witness is None:
        return prove_checked(pk, verifier, circuit, inputs)
    from fedledger.zk.witness import write_wtns

    path = wtns_tempfile()
    try:
        write_wtns(Path(path), witness(inputs))
        return prove_wtns_checked(pk, verifier, circuit, inputs, path)
    finally:
        os.unlink(path)


def _pool_prove(key_dir: str, circuit: Circuit, inputs: dict[str, object]) -> tuple[bytes, float, float]:
    """One proof in a worker: (proof, wall seconds, this process's CPU seconds)."""
    pk, verifier = _POOL_KEYS[key_dir]
    t0, c0 = time.perf_counter(), time.process_time()
    proof = _prove_one(pk, verifier, circuit, inputs, _POOL_WITNESS.get(key_dir))
    return proof, time.perf_counter() - t0, time.process_time() - c0


def _pool_ready(workers: int) -> int:
    """Return this worker's pid once all `workers` have loaded their keys and are in this task: one task per
    worker, so the pool's first proofs wait for no key, and the pids returned are the workers'."""
    ready = _POOL_READY[0]
    with ready.get_lock():
        ready.value += 1
    deadline = time.monotonic() + 3600
    while ready.value < workers and time.monotonic() < deadline:
        time.sleep(0.005)
    return os.getpid()


class ProverPool:
    """Provers for one circuit that load the proving key once and prove many witnesses.

    `workers = 1` proves in the calling process; `workers > 1` starts that many worker processes
    (spawned, each loading the key once) and proves witnesses in parallel. `witness`, a picklable
    function from a circuit input to its full witness (the wire values), makes the workers compute
    witnesses natively and prove with `prove_wtns`; without it they run groth16py's `prove` (wasm
    witness). `submit` returns a future for one proof; `prove_many` returns the proofs in input order
    with each proof's own seconds. A witness that does not satisfy the circuit raises ProvingError;
    so does a worker process that dies (killed, out of memory): its proofs and those queued with it
    fail with one ProvingError saying so, and the next `submit` starts fresh workers. `cpu_seconds`
    adds up the provers' CPU time (a figure that, unlike wall time, does not depend on what else the
    machine runs); it includes a proof's CPU by the time that proof's future is done.
    """

    def __init__(
        self, keys: KeySet, workers: int = 1, *, witness: Callable[[Mapping[str, object]], list[int]] | None = None
    ) -> None:
        self.keys = keys
        self.workers = max(1, int(workers))
        self.witness = witness
        self._pool: Any = None
        self._lock = threading.Lock()
        self.cpu_seconds = 0.0
        self.pids: list[int] = []  # the worker processes (none with one worker)
        if self.workers == 1:
            _ = keys.pk  # load now, once
            return
        self._start()

    def _start(self) -> None:
        import concurrent.futures as cf
        import multiprocessing as mp

        threads = max(1, (os.cpu_count() or 1) // self.workers)
        ctx = mp.get_context("spawn")  # never fork a process that may hold prover threads
        self._pool = cf.ProcessPoolExecutor(
            self.workers,
            mp_context=ctx,
            initializer=_pool_init,
            initargs=(str(self.keys.directory), threads, self.witness, ctx.Value("i", 0)),
        )
        try:  # key loading is not billed to a proof
            self.pids = list(self._pool.map(_pool_ready, [self.workers] * self.workers))
        except BrokenProcessPool as e:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            raise ProvingError(f"{self.keys.circuit.name}: a prover process died while loading the keys") from e

    def _prove_here(self, inp: Mapping[str, object]) -> tuple[bytes, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            proof = _prove_one(self.keys.pk, self.keys.verifier, self.keys.circuit, inp, self.witness)
            return proof, time.perf_counter() - t0
        finally:
            with self._lock:
                self.cpu_seconds += time.process_time() - c0

    def submit(self, inputs: Mapping[str, object]) -> Future[tuple[bytes, float]]:
        """Start one proof; the future gives (proof, seconds) or raises ProvingError. With one worker the proof
        is made now, in the calling thread."""
        out: Future[tuple[bytes, float]] = Future()
        if self._pool is None:
            if self.workers > 1:
                raise ConfigError("this prover pool is closed")
            try:
                out.set_result(self._prove_here(inputs))
            except BaseException as err:
                out.set_exception(err)
            return out
        args = (_pool_prove, str(self.keys.directory), self.keys.circuit, dict(inputs))
        try:
            inner = self._pool.submit(*args)
        except BrokenProcessPool:  # a worker died earlier: its pool is gone, start fresh workers
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._start()
            inner = self._pool.submit(*args)
        out.set_running_or_notify_cancel()

        def done(f: Future[tuple[bytes, float, float]]) -> None:
            # the CPU is counted before `out` is done, so whoever waits on `out` sees it
            err = f.exception() if not f.cancelled() else ProvingError("proof cancelled")
            if err is None:
                proof, wall, cpu = f.result()
                with self._lock:
                    self.cpu_seconds += cpu
                out.set_result((proof, wall))
            elif isinstance(err, BrokenProcessPool):
                out.set_exception(ProvingError(
                    f"{self.keys.circuit.name}: a prover process died (killed or out of memory) before this proof "
                    f"was done: {err}"))
            else:
                out.set_exception(err)

        inner.add_done_callback(done)
        return out

    def prove_many(self, inputs: Sequence[Mapping[str, object]]) -> list[tuple[bytes, float]]:
        futures = [self.submit(inp) for inp in inputs]
        return [f.result() for f in futures]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> ProverPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
