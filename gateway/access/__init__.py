"""Who is calling and what they may do: the principal, and the guards around every proxied request."""
