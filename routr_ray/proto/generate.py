"""Generate the Python protobuf/gRPC code in ``routr_ray/proto/gen`` from ``protos/*.proto``.

Run ``python -m routr_ray.proto.generate`` (or ``scripts/gen_protos.sh``) after editing a .proto file and
commit the result; ``tests/unit/test_proto_generated.py`` fails when the committed code is out of date.

protoc emits top-level imports (``import common_pb2 as common__pb2``) because Routr's .proto files import
each other by bare file name. They are rewritten here, deterministically, into package-relative imports
(``from . import common_pb2 as common__pb2``) so the generated modules import inside ``routr_ray.proto.gen``
without touching ``sys.path``.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from importlib import metadata
from pathlib import Path

GRPCIO_TOOLS_VERSION = "1.85.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO_ROOT / "protos"
GEN_DIR = Path(__file__).resolve().parent / "gen"

_LOCAL_IMPORT = re.compile(r"^import (\w+_pb2(?:_grpc)?) as (\w+)$", re.MULTILINE)
# The module name protoc gives the message classes (their ``__module__``). It must be the importable package
# path: Ray/Serve pickle classes by reference, and ``processor_pb2`` alone cannot be imported.
_MODULE_NAME = re.compile(r"BuildTopDescriptorsAndMessages\(DESCRIPTOR, '(\w+_pb2)', _globals\)")
GEN_PACKAGE = "routr_ray.proto.gen"
_GEN_INIT = '"""Generated protobuf and gRPC code (routr_ray.proto.generate). Do not edit."""\n'


def proto_files(proto_dir: Path = PROTO_DIR) -> list[str]:
    return sorted(p.name for p in proto_dir.glob("*.proto"))


def _rewrite_imports(text: str, local_modules: set[str]) -> str:
    def repl(match: re.Match[str]) -> str:
        module, alias = match.group(1), match.group(2)
        if module not in local_modules:
            return match.group(0)
        return f"from . import {module} as {alias}"

    text = _LOCAL_IMPORT.sub(repl, text)
    return _MODULE_NAME.sub(
        lambda m: f"BuildTopDescriptorsAndMessages(DESCRIPTOR, '{GEN_PACKAGE}.{m.group(1)}', _globals)", text)


def generate(out_dir: Path, proto_dir: Path = PROTO_DIR) -> list[Path]:
    """Generate into ``out_dir`` (created; existing generated files replaced). Returns the files written."""
    from grpc_tools import protoc  # dev dependency: only needed to regenerate

    installed = metadata.version("grpcio-tools")
    if installed != GRPCIO_TOOLS_VERSION:
        raise RuntimeError(f"grpcio-tools {GRPCIO_TOOLS_VERSION} required to regenerate, found {installed}")
    well_known = Path(protoc.__file__).resolve().parent / "_proto"
    files = proto_files(proto_dir)
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *files,
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed: " + " ".join(args))
        produced = sorted(Path(tmp).glob("*.py*"))
        local_modules = {p.name.split(".")[0] for p in produced}
        out_dir.mkdir(parents=True, exist_ok=True)
        for old in out_dir.glob("*_pb2*.py*"):
            old.unlink()
        written = []
        for src in produced:
            dst = out_dir / src.name
            dst.write_text(_rewrite_imports(src.read_text(), local_modules))
            written.append(dst)
    init = out_dir / "__init__.py"
    init.write_text(_GEN_INIT)
    written.append(init)
    return sorted(written)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=GEN_DIR, help="output directory (default: %(default)s)")
    ns = parser.parse_args(argv)
    written = generate(ns.out)
    print(f"generated {len(written)} files into {ns.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

