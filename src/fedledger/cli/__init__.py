"""Layer 7: the `fedledger` command line."""
