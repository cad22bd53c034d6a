"""Routing policies: the YAML model, its loader and hot reload."""
