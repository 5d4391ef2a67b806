"""Talking to Kraiter: the client, its transport, the API dialect, rate control, retries."""
