"""fedledger.privacy (see DESIGN.md for its layer)."""
