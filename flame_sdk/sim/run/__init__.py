"""Running the simulator: the ``flame-sim`` CLI, the in-process ``Simulation``, process runs, topologies for
docker, seeding and the results view. The top layer: nothing else in the simulator imports it."""
