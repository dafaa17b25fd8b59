"""The embedded analysis REST API that the node polls and the message broker calls."""
