"""The committed generated code in routr_ray/proto/gen matches protos/*.proto and imports in-package."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from routr_ray.proto import generate

GEN_MODULES = [p.removesuffix(".proto") for p in generate.proto_files()]


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    written = generate.generate(tmp_path)
    fresh = {p.name: p.read_text() for p in written}
    committed = {p.name: p.read_text() for p in generate.GEN_DIR.iterdir() if p.is_file() and p.suffix in {".py", ".pyi"}}
    assert sorted(fresh) == sorted(committed), "run scripts/gen_protos.sh and commit routr_ray/proto/gen"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"generated code out of date ({stale}): run scripts/gen_protos.sh"


def test_every_proto_has_generated_modules() -> None:
    assert {"common", "processor", "sipmessage", "location", "requester", "agents", "peers", "domains",
            "numbers", "trunks", "credentials", "acl"} <= set(GEN_MODULES)


@pytest.mark.parametrize("name", GEN_MODULES)
def test_generated_modules_import_inside_the_package(name: str) -> None:
    pb2 = importlib.import_module(f"routr_ray.proto.gen.{name}_pb2")
    grpc_mod = importlib.import_module(f"routr_ray.proto.gen.{name}_pb2_grpc")
    assert pb2.DESCRIPTOR.name == f"{name}.proto"
    assert grpc_mod.__name__.endswith("_pb2_grpc")


def test_routr_wire_names() -> None:
    from routr_ray.proto.gen import location_pb2, processor_pb2, processor_pb2_grpc, sipmessage_pb2

    assert processor_pb2.DESCRIPTOR.services_by_name["Processor"].full_name == (
        "fonoster.routr.processor.v2beta1.Processor")
    assert location_pb2.DESCRIPTOR.services_by_name["Location"].full_name == "fonoster.routr.location.v2beta1.Location"
    fields = {f.name: f.number for f in sipmessage_pb2.SIPMessage.DESCRIPTOR.fields}
    assert fields["response_type"] == 1 and fields["request_uri"] == 2 and fields["extensions"] == 12
    assert fields["via"] == 13 and fields["body"] == 17 and fields["status_code"] == 101
    assert hasattr(processor_pb2_grpc, "ProcessorServicer") and hasattr(processor_pb2_grpc, "ProcessorStub")
    req = processor_pb2.MessageRequest(ref="abc", method=processor_pb2.INVITE)
    req.message.request_uri.host = "example.com"
    again = processor_pb2.MessageRequest.FromString(req.SerializeToString())
    assert again.message.WhichOneof("message_type") == "request_uri"
    assert again.message.request_uri.host == "example.com"
