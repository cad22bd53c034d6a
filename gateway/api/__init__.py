"""HTTP API: the OpenAI-compatible routes and our own (health, explain, admin)."""
