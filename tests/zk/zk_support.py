"""Parameters shared by the zk tests (a module with a unique name, importable from every test file)."""

from __future__ import annotations

from fedledger.zk.update import UpdateSpec

# Small circuits keep the suite fast; the bench runs the 4,096-entry chunk.
SMALL = UpdateSpec(chunk_size=16, entry_bits=16, noise_bits=12, bound2x=10_000_000, bound2e=1_000_000)
