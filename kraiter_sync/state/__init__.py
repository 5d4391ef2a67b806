"""What a run remembers: the ledger, rejects, plan files."""
