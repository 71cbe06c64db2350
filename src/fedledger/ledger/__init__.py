"""fedledger.ledger (see DESIGN.md for its layer)."""
