"""Pieces every simulated service shares: web helpers, the plain data model, the Keycloak stand-in and the
result service's envelope crypto. Imports nothing else of the simulator."""
