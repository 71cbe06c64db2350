"""fedledger.secagg (see DESIGN.md for its layer)."""
