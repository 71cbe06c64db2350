"""fedledger.zk (see DESIGN.md for its layer)."""
