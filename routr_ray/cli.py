"""The `routr-ray` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from routr_ray import __version__


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


def _cmd_run(args: argparse.Namespace) -> int:
    from routr_ray.actors.launcher import RunOptions, resolve_config_dir, run

    options = RunOptions(
        config_dir=resolve_config_dir(args.config),
        address=args.address,
        redis_url=args.redis,
        dashboard=not args.no_dashboard,
    )
    return run(options)


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

    run = sub.add_parser("run", help="start the server on this machine (local Ray)")
    run.add_argument("--config", metavar="DIR", help="config directory (default: $ROUTR_RAY_CONFIG or ./config)")
    run.add_argument("--address", metavar="ADDR", help="join an existing Ray cluster instead of starting one")
    run.add_argument("--redis", metavar="URL", help="persist Location in Redis (redis:// or rediss:// URL)")
    run.add_argument("--no-dashboard", action="store_true", help="do not start the Ray dashboard (saves ~1 GB RSS)")
    run.set_defaults(func=_cmd_run)
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
