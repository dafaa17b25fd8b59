"""Async clients of the node services, one module per service."""
