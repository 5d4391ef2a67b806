"""What must be sent: diffs against the ledger and Kraiter, and the guards."""
