"""fedledger.report (see DESIGN.md for its layer)."""
