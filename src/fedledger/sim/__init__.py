"""Layer 6: run a whole federation in one process."""

from fedledger.sim.federation import RoundRecord, RunResult, Simulation, centralized_baseline

__all__ = ["RoundRecord", "RunResult", "Simulation", "centralized_baseline"]
