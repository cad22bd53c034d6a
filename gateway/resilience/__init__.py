"""Resilience: the attempt loop with retries and failover (the only tenacity user)."""
