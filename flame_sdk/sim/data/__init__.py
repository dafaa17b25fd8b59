"""Synthetic cohorts and the data-source specs that say which node serves which data."""
