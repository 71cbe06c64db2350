"""SecAgg+'s randomness comes from `fedledger.core.rng`, the one place fedledger reads the OS CSPRNG.

Re-exported here so the secure-aggregation modules keep short imports: `random_bytes` (os.urandom)
is the default source of every member's per-session secrets; callers that want a reproducible
simulation pass a `rand` drawn from a deterministic `Entropy` stream instead (see
`fedledger.core.rng.Entropy.stream`).
"""

from fedledger.core.rng import CryptoRng, random_bytes

__all__ = ["CryptoRng", "random_bytes"]
