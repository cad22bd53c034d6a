"""Routing: which backends may serve a request, how they rank, and driving an attempt."""
