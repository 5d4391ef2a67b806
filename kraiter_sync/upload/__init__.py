"""The one engine that writes to Kraiter."""
