"""Poseidon over BN254, bit-for-bit the circomlib 2.0.5 `Poseidon(n)` template.

Groth16 `prove` returns only the proof, so every public value a circuit computes with Poseidon
(commitments, chained running states) must be recomputed outside the circuit. This module
evaluates the same optimised round structure as circomlib's `PoseidonEx` (full rounds with
matrix M, the sparse partial rounds with S and the pre-mixing matrix P), with round constants
read from the circomlib sources shipped inside the groth16py wheel, so there is exactly one
copy of the constants on the machine. Parameters: x^5 S-box, 8 full rounds, partial rounds per
width from Grassi et al., "Poseidon" (USENIX Security 2021), table 2/8.

The tests check this against the circuit itself (a proof verifies with the value computed
here as its public input) for several widths.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from fedledger.zk.field import P

_N_ROUNDS_P = (56, 57, 56, 60, 60, 63, 64, 63, 60, 66, 60, 65, 70, 60, 64, 68)
_N_ROUNDS_F = 8
MAX_INPUTS = 16


def circomlib_dir() -> str:
    """The circom-2 circomlib shipped with groth16py (include path for circuits)."""
    import groth16py

    return groth16py.circomlib_path(2)


@dataclass(frozen=True)
class _Params:
    t: int
    n_p: int
    c: tuple[int, ...]
    s: tuple[int, ...]
    m: tuple[tuple[int, ...], ...]
    p: tuple[tuple[int, ...], ...]


@functools.cache
def _constants_source() -> str:
    with open(os.path.join(circomlib_dir(), "poseidon_constants.circom")) as f:
        return f.read()


def _function_body(name: str) -> str:
    src = _constants_source()
    start = src.index(f"function {name}(t)")
    nxt = src.find("function ", start + 10)
    return src[start : nxt if nxt >= 0 else len(src)]


def _block_for_t(body: str, t: int) -> str:
    m = re.search(rf"if \(t=={t}\)\s*\{{(.*?)\}}\s*else", body, re.S)
    if m is None:  # the last branch has no trailing else
        m = re.search(rf"if \(t=={t}\)\s*\{{(.*?)\}}", body, re.S)
    if m is None:
        raise ValueError(f"no Poseidon constants for width {t}")
    return m.group(1)


def _numbers(block: str) -> list[int]:
    return [int(x, 16) for x in re.findall(r"0x[0-9a-fA-F]+", block)]


@functools.cache
def _params(t: int) -> _Params:
    if not 2 <= t <= MAX_INPUTS + 1:
        raise ValueError(f"Poseidon width {t} is outside 2..{MAX_INPUTS + 1}")
    n_p = _N_ROUNDS_P[t - 2]
    c = _numbers(_block_for_t(_function_body("POSEIDON_C"), t))
    s = _numbers(_block_for_t(_function_body("POSEIDON_S"), t))
    m_flat = _numbers(_block_for_t(_function_body("POSEIDON_M"), t))
    p_flat = _numbers(_block_for_t(_function_body("POSEIDON_P"), t))
    if len(c) != t * _N_ROUNDS_F + n_p or len(s) != n_p * (2 * t - 1):
        raise ValueError(f"unexpected Poseidon constant lengths for width {t}")
    if len(m_flat) != t * t or len(p_flat) != t * t:
        raise ValueError(f"unexpected Poseidon matrix sizes for width {t}")
    m = tuple(tuple(m_flat[i * t : (i + 1) * t]) for i in range(t))
    pm = tuple(tuple(p_flat[i * t : (i + 1) * t]) for i in range(t))
    return _Params(t, n_p, tuple(c), tuple(s), m, pm)


def _sbox(x: int) -> int:
    return pow(x, 5, P)


def _mix(state: list[int], m: tuple[tuple[int, ...], ...]) -> list[int]:
    t = len(state)
    return [sum(m[j][i] * state[j] for j in range(t)) % P for i in range(t)]


def poseidon(inputs: Sequence[int]) -> int:
    """circomlib `Poseidon(len(inputs))` of field elements (1 to 16 inputs)."""
    n = len(inputs)
    if not 1 <= n <= MAX_INPUTS:
        raise ValueError(f"Poseidon takes 1..{MAX_INPUTS} inputs, got {n}")
    prm = _params(n + 1)
    t, c, half = prm.t, prm.c, _N_ROUNDS_F // 2
    state = [0, *(int(x) % P for x in inputs)]
    state = [(state[i] + c[i]) % P for i in range(t)]
    for r in range(half - 1):
        state = [_sbox(x) for x in state]
        state = [(state[i] + c[(r + 1) * t + i]) % P for i in range(t)]
        state = _mix(state, prm.m)
    state = [_sbox(x) for x in state]
    state = [(state[i] + c[half * t + i]) % P for i in range(t)]
    state = _mix(state, prm.p)
    w = 2 * t - 1
    for r in range(prm.n_p):
        s0 = (_sbox(state[0]) + c[(half + 1) * t + r]) % P
        row = prm.s[w * r : w * (r + 1)]
        new0 = (row[0] * s0 + sum(row[i] * state[i] for i in range(1, t))) % P
        state = [new0, *((state[i] + s0 * row[t + i - 1]) % P for i in range(1, t))]
    for r in range(half - 1):
        state = [_sbox(x) for x in state]
        base = (half + 1) * t + prm.n_p + r * t
        state = [(state[i] + c[base + i]) % P for i in range(t)]
        state = _mix(state, prm.m)
    state = [_sbox(x) for x in state]
    return sum(prm.m[j][0] * state[j] for j in range(t)) % P


def sponge(domain: int, elements: Sequence[int], rate: int = 15) -> int:
    """The chained hash the circuits use for long inputs (`Sponge` in update_chunk.circom).

    h_0 = domain; h_{i+1} = Poseidon(h_i, e_{15i}, ..., e_{15i+14}); the last block takes what
    is left, unpadded, in a Poseidon of its own width. The element count is fixed per circuit,
    so the block widths are too.
    """
    if not elements:
        raise ValueError("sponge of no elements")
    h = domain % P
    for i in range(0, len(elements), rate):
        h = poseidon([h, *elements[i : i + rate]])
    return h


@functools.cache
def _signal_names(prefix: str, n: int) -> tuple[str, ...]:
    """The names `poseidon_signals` writes, in the order it computes them (formatted once)."""
    out: dict[str, int] = {}
    _poseidon_trace(prefix, [0] * n, out)
    return tuple(out)


def poseidon_signals(prefix: str, inputs: Sequence[int], out: dict[str, int]) -> int:
    """circomlib `Poseidon(n)` evaluated signal by signal, the values stored under their circom
    names (`prefix.pEx.ark[r].out[j]`, `prefix.pEx.sigmaF[r][j].in2`, ...) in `out`; returns the
    hash. The native witness generator (`fedledger.zk.witness`) reads the wires from these."""
    vals: list[int] = []
    h = _poseidon_trace(prefix, inputs, None, vals)
    out.update(zip(_signal_names(prefix, len(inputs)), vals, strict=True))
    return h


def _poseidon_trace(prefix: str, inputs: Sequence[int], out: dict[str, int] | None,
                    vals: list[int] | None = None) -> int:
    """Evaluate circomlib's PoseidonEx signal by signal: with `out`, store values by name; with
    `vals`, append the same values in the same order (names come from `_signal_names`)."""
    if out is None:
        assert vals is not None
        put = vals.append

        def setv(_name: str, v: int) -> None:
            put(v)
    else:
        def setv(name: str, v: int) -> None:
            out[name] = v

    n = len(inputs)
    prm = _params(n + 1)
    t, c, m, pm, sm = prm.t, prm.c, prm.m, prm.p, prm.s
    nf, n_p = _N_ROUNDS_F, prm.n_p
    half = nf // 2
    x = f"{prefix}.pEx" if out is not None else ""
    for i, v in enumerate(inputs):
        setv(f"{prefix}.inputs[{i}]" if out is not None else "", int(v) % P)
        setv(f"{x}.inputs[{i}]" if out is not None else "", int(v) % P)
    setv(f"{x}.initialState" if out is not None else "", 0)
    named = out is not None

    def ark(r: int, vals_: list[int], off: int) -> list[int]:
        res = [(vals_[j] + c[j + off]) % P for j in range(t)]
        for j in range(t):
            setv(f"{x}.ark[{r}].in[{j}]" if named else "", vals_[j])
            setv(f"{x}.ark[{r}].out[{j}]" if named else "", res[j])
        return res

    def sigma(name: str, v: int) -> int:
        v2 = v * v % P
        v4 = v2 * v2 % P
        o = v4 * v % P
        if named:
            setv(f"{name}.in", v)
            setv(f"{name}.in2", v2)
            setv(f"{name}.in4", v4)
            setv(f"{name}.out", o)
        else:
            put(v)
            put(v2)
            put(v4)
            put(o)
        return o

    def mix(r: int, vals_: list[int], mat: tuple[tuple[int, ...], ...]) -> list[int]:
        res = [sum(mat[j][i] * vals_[j] for j in range(t)) % P for i in range(t)]
        for j in range(t):
            setv(f"{x}.mix[{r}].in[{j}]" if named else "", vals_[j])
            setv(f"{x}.mix[{r}].out[{j}]" if named else "", res[j])
        return res

    state = ark(0, [0, *(int(v) % P for v in inputs)], 0)
    for r in range(half - 1):
        sig = [sigma(f"{x}.sigmaF[{r}][{j}]" if named else "", state[j]) for j in range(t)]
        state = mix(r, ark(r + 1, sig, (r + 1) * t), m)
    sig = [sigma(f"{x}.sigmaF[{half - 1}][{j}]" if named else "", state[j]) for j in range(t)]
    state = mix(half - 1, ark(half, sig, half * t), pm)
    w = 2 * t - 1
    for r in range(n_p):
        s0 = sigma(f"{x}.sigmaP[{r}]" if named else "", state[0])
        ins = [(s0 + c[(half + 1) * t + r]) % P, *state[1:]]
        row = sm[w * r : w * (r + 1)]
        new = [sum(row[i] * ins[i] for i in range(t)) % P]
        new += [(ins[i] + ins[0] * row[t + i - 1]) % P for i in range(1, t)]
        for j in range(t):
            setv(f"{x}.mixS[{r}].in[{j}]" if named else "", ins[j])
            setv(f"{x}.mixS[{r}].out[{j}]" if named else "", new[j])
        state = new
    for r in range(half - 1):
        sig = [sigma(f"{x}.sigmaF[{half + r}][{j}]" if named else "", state[j]) for j in range(t)]
        state = mix(half + r, ark(half + r + 1, sig, (half + 1) * t + n_p + r * t), m)
    sig = [sigma(f"{x}.sigmaF[{nf - 1}][{j}]" if named else "", state[j]) for j in range(t)]
    h = sum(m[j][0] * sig[j] for j in range(t)) % P
    for j in range(t):
        setv(f"{x}.mixLast[0].in[{j}]" if named else "", sig[j])
    setv(f"{x}.mixLast[0].out" if named else "", h)
    setv(f"{x}.out[0]" if named else "", h)
    setv(f"{prefix}.out" if named else "", h)
    return h
