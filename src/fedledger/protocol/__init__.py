"""fedledger.protocol (see DESIGN.md for its layer)."""
