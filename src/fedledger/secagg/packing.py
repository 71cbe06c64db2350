"""b-bit transport: vectors of integers modulo 2**b packed into ceil(b*len/8) bytes.

b = 8, 16, 32 are plain little-endian arrays; other widths are bit-packed (vectorized with
numpy's packbits, little-endian bit order). Decoding rejects a wrong byte length and non-zero
padding bits, so one vector has exactly one encoding.
"""

from __future__ import annotations

import numpy as np

from fedledger.secagg.errors import DecodeError


def check_bits(bits: int) -> None:
    if not 8 <= bits <= 32:
        raise ValueError(f"modulus bits must be in 8..32, got {bits}")


def packed_size(length: int, bits: int) -> int:
    return (length * bits + 7) // 8


def pack(values: np.ndarray, bits: int) -> bytes:
    """Pack uint32 values (each < 2**bits) into bytes."""
    check_bits(bits)
    v = np.ascontiguousarray(values, dtype=np.uint32).reshape(-1)
    if bits < 32 and v.size and int(v.max()) >> bits:
        raise ValueError(f"value does not fit in {bits} bits")
    if bits == 32:
        return v.astype("<u4").tobytes()
    if bits == 16:
        return v.astype("<u2").tobytes()
    if bits == 8:
        return v.astype("<u1").tobytes()
    as_bytes = v.astype("<u4").view(np.uint8).reshape(-1, 4)
    bitmat = np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :bits]
    return np.packbits(bitmat.reshape(-1), bitorder="little").tobytes()


def unpack(data: bytes, length: int, bits: int) -> np.ndarray:
    """Inverse of `pack`; raises DecodeError on a wrong size or non-zero padding."""
    check_bits(bits)
    if len(data) != packed_size(length, bits):
        raise DecodeError(f"packed vector: expected {packed_size(length, bits)} bytes, got {len(data)}")
    if bits in (8, 16, 32):
        dt = {8: "<u1", 16: "<u2", 32: "<u4"}[bits]
        return np.frombuffer(data, dtype=dt).astype(np.uint32)
    raw = np.frombuffer(data, dtype=np.uint8)
    allbits = np.unpackbits(raw, bitorder="little")
    if allbits[length * bits :].any():
        raise DecodeError("packed vector: non-zero padding bits")
    bitmat = allbits[: length * bits].reshape(length, bits)
    weights = (np.uint32(1) << np.arange(bits, dtype=np.uint32)).astype(np.uint32)
    return (bitmat.astype(np.uint32) * weights).sum(axis=1, dtype=np.uint64).astype(np.uint32)
