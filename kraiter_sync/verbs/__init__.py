"""The verbs: import, retry, reconcile, apply, restore, validate, runs."""
