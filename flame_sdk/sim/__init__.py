"""A simulator of the FLAME hub and node services, speaking the real node HTTP protocols."""
