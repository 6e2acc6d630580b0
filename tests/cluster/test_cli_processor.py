"""`routr-ray processor serve MODULE:CLASS --port N` in a subprocess: answers over gRPC, asks for the token from
ROUTR_RAY_PROCESSOR_TOKEN, stops on SIGTERM (no Ray involved)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import grpc
import pytest

from routr_ray.proto.convert import make_message_request, read_message_response
from routr_ray.proto.gen import processor_pb2_grpc
from routr_ray.sip import parse
from tests.support.redis_server import free_port

OPTIONS = (b"OPTIONS sip:sip.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-ps1\r\n"
           b"Max-Forwards: 70\r\nFrom: <sip:a@sip.local>;tag=1\r\nTo: <sip:sip.local>\r\n"
           b"Call-ID: ps-1@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")


def test_processor_serve_answers_with_the_token_and_stops_on_sigterm() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "routr_ray", "processor", "serve", "routr_ray.processors.echo:EchoProcessor",
         "--port", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "ROUTR_RAY_PROCESSOR_TOKEN": "s3cret"})
    try:
        request = make_message_request(parse(OPTIONS), edge_port_ref="ep", sender=("127.0.0.1", 5070, "UDP"))
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            stub = processor_pb2_grpc.ProcessorStub(channel)
            answer = stub.ProcessMessage(request, timeout=10, metadata=(("authorization", "Bearer s3cret"),))
            assert read_message_response(answer).status == 200
            with pytest.raises(grpc.RpcError) as refused:
                stub.ProcessMessage(request, timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_processor_serve_on_a_taken_port_is_one_line() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "routr_ray", "processor", "serve", "routr_ray.processors.echo:EchoProcessor",
             "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == (
        f"routr-ray: cannot listen on TCP 127.0.0.1:{port} (processor): address already in use")
