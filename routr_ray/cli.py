"""The `routr-ray` command line.

Commands: ``run`` (everything on this machine, in the foreground), ``deploy`` (onto an existing Ray cluster, then
return), ``status``, ``locate AOR``, ``validate-config`` and ``processor serve MODULE:CLASS``. Ray is imported
only by the commands that need it, so ``--help`` and ``validate-config`` stay fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from routr_ray import __version__

PROCESSOR_TOKEN_ENV = "ROUTR_RAY_PROCESSOR_TOKEN"
LOCATION_TOKEN_ENV = "ROUTR_RAY_LOCATION_TOKEN"  # routr_ray.config.location.TOKEN_ENV
CONFIG_ENV = "ROUTR_RAY_CONFIG"


def _fail(message: str) -> int:
    print(f"routr-ray: {message}", file=sys.stderr, flush=True)
    return 1


def _cmd_validate_config(args: argparse.Namespace) -> int:
    from routr_ray.config import validate_paths

    errors = validate_paths(args.paths)
    if errors:
        for error in errors:
            print(str(error), file=sys.stderr)
        print(f"{len(errors)} error(s)", file=sys.stderr)
        return 1
    print("OK")
    return 0


def _run_options(args: argparse.Namespace, config_dir: Path) -> object:
    from routr_ray.actors.launcher import RunOptions

    return RunOptions(
        config_dir=config_dir,
        address=args.address or os.environ.get("RAY_ADDRESS") or None,  # Ray itself would join $RAY_ADDRESS
        redis_url=args.redis,
        dashboard=not getattr(args, "no_dashboard", False),
        drain_seconds=getattr(args, "drain_seconds", 5.0),
        object_store_mb=getattr(args, "object_store_mb", 256),
        num_cpus=getattr(args, "num_cpus", None),
        deploy_serve=not getattr(args, "skip_serve", False),
        state_dir=Path(args.state_dir).expanduser() if getattr(args, "state_dir", None) else None,
        log_dir=Path(args.log_dir) if getattr(args, "log_dir", None) else None,
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from routr_ray.actors.launcher import resolve_config_dir, run

    return run(_run_options(args, resolve_config_dir(args.config)))  # type: ignore[arg-type]


def _cmd_deploy(args: argparse.Namespace) -> int:
    from routr_ray.actors.launcher import deploy

    return deploy(_run_options(args, Path(args.config_dir)))  # type: ignore[arg-type]


def _connect(address: str) -> str | None:
    """Join the cluster quietly; an error line, or None when connected."""
    import ray

    from routr_ray.actors import NAMESPACE

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    unreachable = _gcs_unreachable(address)
    if unreachable:  # Ray itself retries an unreachable GCS for a minute
        return f"cannot connect to the Ray cluster ({address}) at {unreachable}"
    try:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, configure_logging=False)
    except Exception as exc:  # noqa: BLE001 - one line
        lines = [line for line in str(exc).splitlines() if line.strip()]
        return f"cannot connect to the Ray cluster at {address}: {lines[-1] if lines else type(exc).__name__}"
    return None


def _gcs_unreachable(address: str, timeout: float = 3.0) -> str | None:
    """For a HOST:PORT address, why a TCP connection fails (None when it succeeds or for auto / ray://)."""
    import socket

    if address == "auto":  # what Ray would pick: the last `ray start` cluster, else any GCS process found
        try:
            from ray._private.services import get_ray_address_from_environment

            address = get_ray_address_from_environment("auto", None) or address
        except Exception:  # noqa: BLE001 - nothing found: Ray's own message follows
            return None
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return None
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        return f"{address}: {exc.strerror or exc}"
    return None


def _cmd_status(args: argparse.Namespace) -> int:
    import ray

    from routr_ray.actors.status import collect_status, format_status

    error = _connect(args.address)
    if error:
        return _fail(error)
    try:
        status = collect_status(timeout=args.timeout)
    finally:
        ray.shutdown()
    if args.json:
        print(json.dumps(status.as_dict(), indent=2))
    else:
        print("\n".join(format_status(status)))
    return 0 if status.healthy else 1


def _location_addr(args: argparse.Namespace) -> str:
    if args.location:
        return args.location
    from routr_ray.config import load_config_dir
    from routr_ray.config.location import LocationConfig

    config_dir = Path(args.config or os.environ.get(CONFIG_ENV) or "config")
    location = load_config_dir(config_dir).location if config_dir.is_dir() else None
    host, _, port = (location or LocationConfig()).bind_addr.rpartition(":")
    if host in ("0.0.0.0", "[::]", "::", ""):
        host = "127.0.0.1"
    return f"{host}:{port}"


def _cmd_locate(args: argparse.Namespace) -> int:
    import grpc

    from routr_ray.config import ConfigInvalid
    from routr_ray.proto.gen import location_pb2, location_pb2_grpc

    try:
        addr = _location_addr(args)
    except ConfigInvalid as exc:
        return _fail(str(exc.errors[0]) if exc.errors else "invalid configuration")
    token = os.environ.get(LOCATION_TOKEN_ENV)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    request = location_pb2.FindRoutesRequest(aor=args.aor, labels=dict(args.label or ()))
    with grpc.insecure_channel(addr) as channel:
        stub = location_pb2_grpc.LocationStub(channel)
        try:
            response = stub.FindRoutes(request, timeout=args.timeout, metadata=metadata)
        except grpc.RpcError as exc:
            return _fail(f"FindRoutes({args.aor}) at {addr}: {exc.code().name}: {exc.details()}")
    if args.json:
        from google.protobuf.json_format import MessageToDict

        print(json.dumps(MessageToDict(response), indent=2))
    elif not response.routes:
        print(f"{args.aor}: no routes")
    else:
        for route in response.routes:
            transport = location_pb2.Route.DESCRIPTOR.fields_by_name["transport"].enum_type.values_by_number[
                route.transport].name
            print(f"{args.aor} -> {route.user or ''}@{route.host}:{route.port} {transport} "
                  f"expires={route.expires}s edgeport={route.edge_port_ref}")
    return 0 if response.routes else 3


def _cmd_processor_serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from routr_ray.processors.server import serve_processor

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bind = f"[{args.bind}]:{args.port}" if ":" in args.bind else f"{args.bind}:{args.port}"
    problem = _tcp_port_problem(args.bind, args.port)  # before gRPC, whose core logs its own lines
    if problem:
        return _fail(f"cannot listen on TCP {bind} (processor): {problem}")
    try:
        asyncio.run(serve_processor(args.processor, bind, token=os.environ.get(PROCESSOR_TOKEN_ENV) or None))
    except (ValueError, OSError) as exc:
        return _fail(str(exc).splitlines()[0])
    except KeyboardInterrupt:
        pass
    return 0


def _tcp_port_problem(host: str, port: int) -> str | None:
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
    return None


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis", metavar="URL",
                        help="keep Location bindings in Redis (redis:// or rediss:// URL; overrides location.yaml)")
    parser.add_argument("--state-dir", metavar="DIR",
                        help="where the nonce/dialog key is kept when the Location does not use Redis and "
                        "$ROUTR_RAY_NONCE_KEY is not set (default: $XDG_STATE_HOME/routr-ray, i.e. "
                        "~/.local/state/routr-ray; never inside the config directory): calls survive a restart")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="routr-ray", description="A SIP server implementing the Routr v2 architecture on Ray."
    )
    parser.add_argument("--version", action="version", version=f"routr-ray {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    validate = sub.add_parser(
        "validate-config",
        help="validate config and resource files (YAML or JSON)",
        description="Validate routr-ray / Routr v2 config files and resource directories. "
        "Prints OK, or every error as FILE: /json/pointer: reason and exits 1.",
    )
    validate.add_argument("paths", nargs="+", metavar="PATH", help="a config file or a directory")
    validate.set_defaults(func=_cmd_validate_config)

    run = sub.add_parser(
        "run", help="start the server on this machine (local Ray) and stay in the foreground",
        description="Start a local Ray (or join --address) and deploy the Location shards and gRPC API, the "
        "routr Serve app (dispatcher + processors) and one EdgePort actor per EdgePort config. Stays in the "
        "foreground; Ctrl-C or SIGTERM drains the EdgePorts (at most --drain-seconds) and stops everything it "
        "started. A startup failure prints one line and exits 1.",
    )
    run.add_argument("--config", metavar="DIR", help=f"config directory (default: ${CONFIG_ENV}, else ./config)")
    run.add_argument("--address", metavar="ADDR",
                     help="join an existing Ray cluster instead of starting one (default: $RAY_ADDRESS if set)")
    _add_cluster_options(run)
    run.add_argument("--no-dashboard", action="store_true",
                     help="do not start the Ray dashboard (saves about 200 MB PSS and 11 processes)")
    run.add_argument("--num-cpus", type=float, metavar="N",
                     help="logical CPUs of the local Ray (default: the machine's; parts take fractions)")
    run.add_argument("--object-store-mb", type=int, default=256, metavar="MB",
                     help="object store size of the local Ray (default: 256)")
    run.add_argument("--drain-seconds", type=float, default=5.0, metavar="S",
                     help="how long EdgePorts drain on shutdown (default: 5)")
    run.add_argument("--log-dir", metavar="DIR",
                     help="keep this run's logs in DIR: routr-ray.log (this process) and, at stop, Ray's session logs "
                     "(every EdgePort, processor and shard) in DIR/session_*; without it they live in the run's "
                     "temporary directory, which a stop removes")
    run.set_defaults(func=_cmd_run)

    deploy = sub.add_parser(
        "deploy", help="deploy onto an existing Ray cluster and return",
        description="Connect to a running Ray cluster and deploy (or update) the Location shards and gRPC API, "
        "the routr Serve app and the EdgePort actors of CONFIG_DIR as detached actors, then disconnect: they "
        "keep running. The Serve app alone can also be updated with `serve deploy cluster/serve_config.yaml`.",
    )
    deploy.add_argument("--address", required=True, metavar="ADDR",
                        help="the cluster: ray://HEAD:10001 (Ray Client), HEAD:6379 or auto (on a cluster node)")
    _add_cluster_options(deploy)
    deploy.add_argument("--skip-serve", action="store_true",
                        help="deploy only the Location and EdgePort actors (the Serve app is managed elsewhere, "
                        "e.g. by a KubeRay RayService or `serve deploy`)")
    deploy.add_argument("config_dir", metavar="CONFIG_DIR", help="config directory (edgeport.yaml, ...)")
    deploy.set_defaults(func=_cmd_deploy)

    status = sub.add_parser(
        "status", help="show EdgePorts, Serve deployments and replicas, Location shards and health",
        description="Connect to the cluster and list the EdgePort actors (listeners, health port), the Serve "
        "applications and deployments (replicas by state), the Location shards (binding counts) and the "
        "Location gRPC API. Exits 0 when everything answers and is healthy, 1 otherwise.",
    )
    status.add_argument("--address", default=os.environ.get("RAY_ADDRESS", "auto"), metavar="ADDR",
                        help="the Ray cluster (default: $RAY_ADDRESS, else auto: the cluster on this machine)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--timeout", type=float, default=5.0, metavar="S", help="per-actor answer timeout")
    status.set_defaults(func=_cmd_status)

    locate = sub.add_parser(
        "locate", help="find the routes of an AOR (Location FindRoutes)",
        description="Ask the Location gRPC API (the config's Location bindAddr, or --location) for the routes "
        "of AOR, e.g. sip:1001@sip.local. Exits 0 when routes were found, 3 when none, 1 on error. A token in "
        f"${LOCATION_TOKEN_ENV} is sent as `authorization: Bearer`.",
    )
    locate.add_argument("aor", metavar="AOR", help="address of record, e.g. sip:1001@sip.local or backend:voice")
    locate.add_argument("--config", metavar="DIR", help=f"config directory (default: ${CONFIG_ENV}, else ./config)")
    locate.add_argument("--location", metavar="HOST:PORT", help="the Location API address (overrides the config)")
    locate.add_argument("--label", action="append", type=_label, metavar="KEY=VALUE", help="filter by label")
    locate.add_argument("--json", action="store_true", help="print the FindRoutesResponse as JSON")
    locate.add_argument("--timeout", type=float, default=5.0, metavar="S", help="gRPC deadline")
    locate.set_defaults(func=_cmd_locate)

    processor = sub.add_parser("processor", help="processor tools",
                               description="Run a processor-SDK class outside Ray.")
    processor_sub = processor.add_subparsers(dest="processor_command", metavar="COMMAND", required=True)
    serve = processor_sub.add_parser(
        "serve", help="serve a processor class as a standalone gRPC processor",
        description="Serve MODULE:CLASS (a routr_ray.processors.Processor subclass) over Routr's "
        "Processor/ProcessMessage gRPC API, with grpc.health.v1 beside it, until SIGINT/SIGTERM. Give the "
        f"dispatcher `addr: HOST:PORT`. With ${PROCESSOR_TOKEN_ENV} set, callers must send that token.",
    )
    serve.add_argument("processor", metavar="MODULE:CLASS", help="e.g. routr_ray.processors.echo:EchoProcessor")
    serve.add_argument("--port", type=int, default=51904, metavar="N", help="port (default: 51904)")
    serve.add_argument("--bind", default="127.0.0.1", metavar="HOST", help="address (default: 127.0.0.1)")
    serve.set_defaults(func=_cmd_processor_serve)

    from routr_ray.api.cli import register as register_api_commands

    register_api_commands(sub)  # agents/peers/domains/numbers/trunks/credentials/acl, db, workspaces, keys, resources
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
