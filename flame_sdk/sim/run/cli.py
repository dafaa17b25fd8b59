"""``flame-sim``: run an analysis on simulated nodes, write synthetic data, inspect results, serve services."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from flame_sdk.sim.run import results_view
from flame_sdk.sim.services.po_lifecycle import REAL_HEALTH_TIMEOUT, PoLimits


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    from flame_sdk.sim.run.runner import RunOptions, run_analysis

    options = RunOptions(nodes=args.nodes, seed=args.seed, results_dir=Path(args.results), timeout=args.timeout,
                         data=Path(args.data) if args.data else None, quiet=args.quiet,
                         health_timeout=args.health_timeout, faults=args.faults, fault_seed=args.fault_seed,
                         kills=args.kill, arguments=argv)
    return run_analysis(args.analysis, options)


def _fault_rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= rate < 1.0:
        raise argparse.ArgumentTypeError(f"the fault rate must be at least 0 and below 1, got {text}")
    return rate


def kill_spec(text: str) -> tuple[str, float]:
    """``node-1@5`` or ``1@5`` -> (``node-1``, 5.0)."""
    node, sep, seconds = text.rpartition("@")
    try:
        delay = float(seconds)
    except ValueError:
        delay = -1.0
    if not sep or not node or not delay >= 0:
        raise argparse.ArgumentTypeError(f"expected NODE@SECONDS (e.g. node-1@5), got {text!r}")
    return (f"node-{node}" if node.isdigit() else node), delay


def _data(args: argparse.Namespace) -> int:
    from flame_sdk.sim.data.bundle_export import write_bundles

    for path in write_bundles(Path(args.out), nodes=args.nodes, seed=args.seed):
        print(path)
    return 0


def _results(args: argparse.Namespace) -> int:
    return results_view.show(Path(args.results), args.run, args.file, args.out)


def _serve(args: argparse.Namespace) -> int:
    from flame_sdk.sim.run.serve import serve

    return serve(args.role, Path(args.topology), node=args.node, host=args.host, port=args.port,
                 results=Path(args.results) if args.results else None, exit_when_finished=args.exit_when_finished,
                 failure_grace=args.failure_grace)


def _seed(args: argparse.Namespace) -> int:
    from flame_sdk.sim.run.seed import seed

    return seed(Path(args.topology), timeout=args.timeout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flame-sim", description="Simulate FLAME nodes and a hub on this machine: run analyses, write "
                                      "synthetic data, inspect results, serve services for docker.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run an analysis on a simulated hub and N nodes",
                              description="Start a hub and N node stacks on loopback, run the analysis once per "
                                          "node as its own process with the env vars a FLAME node sets, show "
                                          "status and logs, and record the run in its own results folder. Node 0 "
                                          "aggregates; nodes 1..N-1 hold data.")
    run.add_argument("analysis", help="analysis file (path/to/analysis.py) or module (package.module)")
    what = run.add_argument_group("what to run")
    what.add_argument("--nodes", type=int, default=None,
                      help="number of nodes including the aggregator (default 3, or one per --data folder + 1)")
    what.add_argument("--seed", type=int, default=0, help="seed of node ids and synthetic data (default 0)")
    what.add_argument("--data", metavar="DIR",
                      help="serve your own data: one subfolder per data node (in sorted order); its files become "
                           "the node's S3 objects, *.json bundles and *.ndjson are loaded into its FHIR server "
                           "(`flame-sim data --out DIR` writes this layout)")
    how = run.add_argument_group("how it runs")
    how.add_argument("--timeout", type=float, default=600, help="seconds before the run is stopped (default 600)")
    how.add_argument("--health-timeout", type=float, default=PoLimits().health_timeout, metavar="SECONDS",
                     help="seconds the simulated PO waits for a node's /healthz before it fails the node "
                          f"(default {PoLimits().health_timeout:g}; the real PO waits "
                          f"{REAL_HEALTH_TIMEOUT:g}, the simulator more because all nodes share this machine)")
    chaos = run.add_argument_group("fault injection")
    chaos.add_argument("--faults", type=_fault_rate, default=0.0, metavar="RATE",
                       help="give each request through a node gateway (both directions) a seeded fault with this "
                            "probability: dropped request or response, HTTP 500/502/503/429, or a delay up to 2 s")
    chaos.add_argument("--fault-seed", type=int, default=0, metavar="N",
                       help="seed of the fault decisions (default 0)")
    chaos.add_argument("--kill", type=kill_spec, action="append", default=[], metavar="NODE@SECONDS",
                       help="SIGKILL a node's analysis process SECONDS after it started (NODE: node-1 or 1); "
                            "repeatable")
    shown = run.add_argument_group("output")
    shown.add_argument("--results", default="results",
                       help="folder of run records: each run gets <results>/<run id>/ (default ./results)")
    shown.add_argument("--quiet", action="store_true",
                       help="do not show the nodes' log lines (they are still in the run's logs/ folder)")
    run.set_defaults(func=_run)

    data = commands.add_parser("data", help="write the synthetic FHIR bundles and S3 datasets of each node",
                               description="Write the deterministic synthetic data the simulator serves.")
    data.add_argument("--out", default="sim-data", help="output folder (default ./sim-data)")
    data.add_argument("--nodes", type=int, default=3, help="number of nodes including the aggregator (default 3)")
    data.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    data.set_defaults(func=_data)

    res = commands.add_parser("results", help="list runs, or show one run (its nodes, results and logs)",
                              description="Without arguments, list the recorded runs, newest first. With a run "
                                          "id (or a unique prefix, or 'last'), show that run; with a file name "
                                          "too, show only that result (CSV as a table).")
    res.add_argument("run", nargs="?", help="run id, a unique prefix of it, or 'last'; default: list all runs")
    res.add_argument("file", nargs="?", help="result file name to show")
    res.add_argument("--results", default="results", help="folder of run records (default ./results)")
    res.add_argument("--out", help="copy the file (or all result files of the run) into this folder")
    res.set_defaults(func=_results)

    srv = commands.add_parser("serve", help="serve the hub or one node stack from a topology file (docker)",
                              description="Run one simulator service as its own process, as the docker-compose "
                                          "setup does.")
    srv.add_argument("role", choices=["hub", "node"], help="what to serve")
    srv.add_argument("--topology", required=True, help="topology JSON file (see docker/topology.json)")
    srv.add_argument("--node", help="node name (for role 'node')")
    srv.add_argument("--host", default="0.0.0.0", help="listen address (default 0.0.0.0)")
    srv.add_argument("--port", type=int, default=80, help="listen port (default 80)")
    srv.add_argument("--results", help="hub: write final results into this folder as they arrive")
    srv.add_argument("--exit-when-finished", action="store_true",
                     help="hub: exit once every node reported a terminal status (0 if all executed with a result)")
    srv.add_argument("--failure-grace", type=float, default=15.0,
                     help="hub: seconds the other nodes get to end after one failed (default 15)")
    srv.set_defaults(func=_serve)

    sed = commands.add_parser("seed", help="load the topology's synthetic data into external FHIR/S3 stores (docker)",
                              description="Write each data source's generated data to the FHIR server (url) or S3 "
                                          "bucket (bucket) the topology names, waiting for them to come up.")
    sed.add_argument("--topology", required=True, help="topology JSON file (see docker/topology.json)")
    sed.add_argument("--timeout", type=float, default=600, help="seconds to wait for the stores (default 600)")
    sed.set_defaults(func=_seed)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args, argv) if args.func is _run else args.func(args)
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `flame-sim results last | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (FileNotFoundError, ValueError) as exc:
        print(f"flame-sim: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
