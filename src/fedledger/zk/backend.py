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
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
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
    _native: Any = field(default=None, repr=False)

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
    def native_prover(self) -> Any:
        """This key held by our native prover (`fedledger.zk.native_groth16.NativeGroth16`), loaded once;
        ConfigError where it cannot be built (no g++)."""
        if self._native is None:
            from fedledger.zk.native_groth16 import NativeGroth16

            self._native = NativeGroth16.load(self.directory / "pk.bin")
        return self._native

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


def prove_wtns_checked(keys: KeySet, inputs: Mapping[str, object], wtns_path: str) -> bytes:
    """Prove from a full witness file (`groth16py.prove_wtns`: no wasm, releases the GIL), then
    verify against the inputs' public values; ProvingError if the witness breaks a constraint."""
    try:
        proof = bytes(groth16py.prove_wtns(keys.pk, wtns_path))
    except Exception as e:  # groth16py's own errors for a malformed witness file
        raise ProvingError(f"{keys.circuit.name}: cannot prove from the witness: {e}") from None
    return _checked(keys, inputs, proof)


def prove_native_checked(keys: KeySet, inputs: Mapping[str, object], wires: Sequence[int]) -> bytes:
    """Prove a full wire assignment with our native prover (releases the GIL), then verify against the
    inputs' public values; ProvingError if the witness breaks a constraint."""
    return _checked(keys, inputs, keys.native_prover.prove(wires))


def _checked(keys: KeySet, inputs: Mapping[str, object], proof: bytes) -> bytes:
    """Neither prover checks the witness (a bad one yields a proof that fails to verify): verify here."""
    if keys.verifier.verify(proof, public_values(keys.circuit, inputs)) is not True:
        raise ProvingError(f"{keys.circuit.name}: witness does not satisfy the circuit (proof does not verify)")
    return proof


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


def _pool_init(key_dir: str, threads: int) -> None:
    """Worker initializer: load the keys of one circuit once, before any proof.

    groth16py's prover runs on one thread (its wall time equals its CPU time here), so a
    worker per core is how a machine's cores are used; RAYON_NUM_THREADS keeps any parallel
    part from oversubscribing them.
    """
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    pk = groth16py.ProvingKey.load(os.path.join(key_dir, "pk.bin"))
    vk = groth16py.VerifyingKey.load(os.path.join(key_dir, "vk.bin"))
    _POOL_KEYS[key_dir] = (pk, groth16py.Verifier(vk))


def _pool_prove(key_dir: str, circuit: Circuit, inputs: dict[str, object]) -> tuple[bytes, float, float]:
    pk, verifier = _POOL_KEYS[key_dir]
    t0, c0 = time.perf_counter(), time.process_time()
    proof = prove_checked(pk, verifier, circuit, inputs)
    return proof, time.perf_counter() - t0, time.process_time() - c0


def _pool_pid(_: int = 0) -> int:
    return os.getpid()


class ProverPool:
    """Provers for one circuit that load the proving key once and prove many witnesses.

    `workers = 1` proves in the calling process; `workers > 1` starts that many worker processes
    (spawned, each loading the key once) and proves witnesses in parallel. `prove_many` returns
    the proofs in input order with each proof's own seconds, and raises ProvingError for a
    witness that does not satisfy the circuit. `cpu_seconds` adds up the provers' CPU time (a
    figure that, unlike wall time, does not depend on what else the machine runs).
    """

    def __init__(self, keys: KeySet, workers: int = 1) -> None:
        import concurrent.futures as cf
        import multiprocessing as mp

        self.keys = keys
        self.workers = max(1, int(workers))
        self._pool: Any = None
        self.cpu_seconds = 0.0
        if self.workers == 1:
            _ = keys.pk  # load now, once
            return
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        self._pool = cf.ProcessPoolExecutor(
            self.workers,
            mp_context=mp.get_context("spawn"),  # never fork a process that may hold prover threads
            initializer=_pool_init,
            initargs=(str(keys.directory), threads),
        )
        list(self._pool.map(_pool_pid, range(self.workers)))  # key loading is not billed to a proof

    def prove_many(self, inputs: Sequence[Mapping[str, object]]) -> list[tuple[bytes, float]]:
        if self._pool is None:
            out = []
            for inp in inputs:
                t0, c0 = time.perf_counter(), time.process_time()
                out.append((prove_checked(self.keys.pk, self.keys.verifier, self.keys.circuit, inp),
                            time.perf_counter() - t0))
                self.cpu_seconds += time.process_time() - c0
            return out
        key_dir = str(self.keys.directory)
        futures = [self._pool.submit(_pool_prove, key_dir, self.keys.circuit, dict(inp)) for inp in inputs]
        results = [f.result() for f in futures]
        self.cpu_seconds += sum(cpu for _, _, cpu in results)
        return [(proof, wall) for proof, wall, _ in results]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> ProverPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
