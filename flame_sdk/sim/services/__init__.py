"""The simulated hub and node services (message broker, PO, result service, data API, gateway), each a
model of the real PrivateAIM service it stands in for. Built on ``sim.common`` and ``sim.data``."""
