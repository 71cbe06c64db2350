"""Native witness generation: the full circom witness computed in Python/numpy, proved with
`groth16py.prove_wtns` (pure Rust, releases the GIL), instead of running the circuit's wasm
under groth16py's interpreter inside `prove`.

How: circom 2 (`circom2`, the compiler the ceremony path already uses) compiles the circuit
once with `--O2 --r1cs --sym`; it produces exactly the constraints and wires of groth16py's
in-process compilation (tested in `test_zk_ceremony`), so its wire numbering is the proving
key's. From the `.r1cs` and `.sym` files a `WitnessPlan` is built once per circuit and cached
beside the keys:

the plan is the signal name each wire carries (the `.sym` file), and the circuit's Python
twin (`update.update_signals`) evaluates the circuit signal by signal, with numpy for the
per-entry part (bits, squares) and `poseidon.poseidon_signals` for the hashes.

Nothing here is trusted for soundness: a wrong witness only yields a proof that does not
verify, and every proof is verified before it leaves the prover.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fedledger.core.errors import ConfigError
from fedledger.zk.field import P

PLAN_FILE = "witness_plan.json"


def find_circom2() -> Path | None:
    """circom2 from $FEDLEDGER_CIRCOM2, the repository's .cache/zk-node, or PATH; None if absent."""
    env = os.environ.get("FEDLEDGER_CIRCOM2")
    cands = [Path(env)] if env else []
    here = Path(__file__).resolve()
    for parent in here.parents:
        cands.append(parent / ".cache" / "zk-node" / "node_modules" / ".bin" / "circom2")
    which = shutil.which("circom2")
    if which:
        cands.append(Path(which))
    for c in cands:
        if c.exists():
            return c
    return None


def compile_r1cs(main_source: str, include_dirs: list[str], work: Path, circom2: Path) -> tuple[Path, Path]:
    """circom2 --O2 --r1cs --sym of `main_source` in `work`; returns (r1cs, sym). The npm circom2
    runs under WASI and sees only its working directory, so the include files are copied in."""
    work.mkdir(parents=True, exist_ok=True)
    args = [str(circom2), "main.circom", "--r1cs", "--sym", "--O2", "-o", "."]
    for i, d in enumerate(include_dirs):
        (work / f"lib{i}").mkdir(exist_ok=True)
        for f in Path(d).glob("*.circom"):
            shutil.copy(f, work / f"lib{i}")
        args += ["-l", f"lib{i}"]
    (work / "main.circom").write_text(main_source)
    try:
        subprocess.run(args, cwd=work, check=True, capture_output=True, timeout=3600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        raise ConfigError(f"circom2 failed: {e}") from e
    return work / "main.r1cs", work / "main.sym"


def _r1cs_header(path: Path) -> tuple[int, int, int]:
    """(n_wires, n_public, n_constraints) from the header of an iden3 .r1cs file."""
    data = Path(path).read_bytes()
    if data[:4] != b"r1cs":
        raise ConfigError(f"{path} is not an r1cs file")
    pos = 12
    for _ in range(int.from_bytes(data[8:12], "little")):
        kind = int.from_bytes(data[pos : pos + 4], "little")
        size = int.from_bytes(data[pos + 4 : pos + 12], "little")
        if kind == 1:
            h = data[pos + 12 : pos + 12 + size]
            n8 = int.from_bytes(h[:4], "little")
            if int.from_bytes(h[4 : 4 + n8], "little") != P:
                raise ConfigError(f"{path}: not over the BN254 scalar field")
            o = 4 + n8
            n_wires, n_out, n_pub = (int.from_bytes(h[o + 4 * i : o + 4 * i + 4], "little") for i in range(3))
            return n_wires, n_out + n_pub, int.from_bytes(h[o + 24 : o + 28], "little")
        pos += 12 + size
    raise ConfigError(f"{path}: no header section")


@dataclass
class WitnessPlan:
    """Which circuit signal each wire of the proving key carries (wire 0 is the constant 1)."""

    n_public: int
    n_constraints: int
    names: list[str]  # names[w - 1]: the signal on wire w

    @classmethod
    def build(cls, r1cs: Path, sym: Path) -> WitnessPlan:
        n_wires, n_public, m = _r1cs_header(r1cs)
        names: list[str | None] = [None] * n_wires
        for line in Path(sym).read_text().splitlines():
            _lab, wire, _comp, name = line.split(",", 3)
            w = int(wire)
            if w > 0 and names[w] is None:
                names[w] = name
        if any(nm is None for nm in names[1:]):
            raise ConfigError("witness plan: a wire carries no named signal")
        return cls(n_public, m, [str(nm) for nm in names[1:]])

    def save(self, path: Path) -> None:
        tmp = Path(path).with_suffix(".tmp")
        doc = {"n_public": self.n_public, "n_constraints": self.n_constraints, "names": self.names}
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> WitnessPlan:
        doc = json.loads(Path(path).read_text())
        return cls(int(doc["n_public"]), int(doc["n_constraints"]), list(doc["names"]))

    def witness(self, signals: Mapping[str, int]) -> list[int]:
        """The wire values, read from the circuit's signal values by name."""
        try:
            return [1, *(signals[nm] for nm in self.names)]
        except KeyError as e:
            raise ConfigError(f"witness plan: no value for signal {e}") from None


def write_wtns(path: Path, values: list[int]) -> None:
    """An iden3 `.wtns` file (version 2): field elements little-endian, standard form."""
    n8 = 32
    head = b"wtns" + (2).to_bytes(4, "little") + (2).to_bytes(4, "little")
    s1 = n8.to_bytes(4, "little") + P.to_bytes(n8, "little") + len(values).to_bytes(4, "little")
    s1 = (1).to_bytes(4, "little") + len(s1).to_bytes(8, "little") + s1
    body = b"".join(v.to_bytes(n8, "little") for v in values)
    s2 = (2).to_bytes(4, "little") + len(body).to_bytes(8, "little")
    with open(path, "wb") as f:
        f.write(head + s1 + s2)
        f.write(body)


def read_wtns(path: Path) -> list[int]:
    data = Path(path).read_bytes()
    if data[:4] != b"wtns":
        raise ConfigError(f"{path} is not a wtns file")
    pos = 12
    n8 = 32
    out: list[int] = []
    for _ in range(int.from_bytes(data[8:12], "little")):
        kind = int.from_bytes(data[pos : pos + 4], "little")
        size = int.from_bytes(data[pos + 4 : pos + 12], "little")
        body = data[pos + 12 : pos + 12 + size]
        if kind == 1:
            n8 = int.from_bytes(body[:4], "little")
        elif kind == 2:
            out = [int.from_bytes(body[i : i + n8], "little") for i in range(0, size, n8)]
        pos += 12 + size
    return out


def build_plan(main_source: str, include_dirs: list[str], key_dir: Path) -> WitnessPlan:
    """Compile with circom2 and build the plan, cached as `key_dir/witness_plan.json`."""
    path = Path(key_dir) / PLAN_FILE
    if path.exists():
        return WitnessPlan.load(path)
    circom2 = find_circom2()
    if circom2 is None:
        raise ConfigError("circom2 not found (see docs/zk.md): native witness generation unavailable")
    with tempfile.TemporaryDirectory() as tmp:
        r1cs, sym = compile_r1cs(main_source, include_dirs, Path(tmp), circom2)
        plan = WitnessPlan.build(r1cs, sym)
    plan.save(path)
    return plan
