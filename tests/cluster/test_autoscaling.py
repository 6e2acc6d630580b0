"""Serve autoscaling of a processor deployment, driven by the dispatcher config (issue 7 item 4).

A slow processor (asyncio sleep, no CPU) behind the dispatcher: under concurrent load its deployment grows from
1 replica, and it shrinks back to 1 once the load stops. The dispatcher reaches it over the link, which Serve does
not see: the replicas' own counts of messages in flight drive the scale (routr_ray/actors/autoscaling_policy.py). Replicas take a tenth of a CPU, so they fit on 2 cores.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ray import serve

from routr_ray.actors.serve_app import build_app, deployment_name
from routr_ray.config.dispatcher import from_document
from routr_ray.proto.convert import make_message_request, read_message_response
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip import parse

APP = "autoscale-test"
SLOW = "routr_ray.processors.testing:SlowEchoProcessor"
DOCUMENT = {
    "apiVersion": "v2beta1",
    "kind": "MessageDispatcher",
    "ref": "autoscaling",
    "spec": {
        "processors": [{
            "ref": "slow-echo",
            "addr": f"serve://{SLOW}",
            "methods": ["OPTIONS"],
            "autoscaling": {"minReplicas": 1, "maxReplicas": 3, "targetOngoingRequests": 1,
                            "upscaleDelaySeconds": 1, "downscaleDelaySeconds": 2},
        }],
    },
}


def options_request(n: int) -> bytes:
    msg = parse((
        "OPTIONS sip:sip.local SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-as{n};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:load@sip.local>;tag=as\r\n"
        "To: <sip:sip.local>\r\n"
        f"Call-ID: autoscale-{n}@127.0.0.1\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n").encode())
    return make_message_request(msg, edge_port_ref="ep", sender=("127.0.0.1", 5070, "UDP")).SerializeToString()


def running_replicas() -> int:
    deployment = serve.status().applications[APP].deployments[deployment_name(SLOW)]
    return sum(count for state, count in deployment.replica_states.items() if getattr(state, "value", state) == "RUNNING")


def wait_for(predicate: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"not reached within {timeout}s"
        time.sleep(0.25)
    return time.monotonic() - start


async def load(handle, seconds: float, until: Callable[[], bool], concurrency: int = 24) -> int:  # noqa: ANN001
    """Keep ``concurrency`` requests in flight through the dispatcher until ``until()`` or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    answered = 0

    async def caller(worker: int) -> None:
        nonlocal answered
        n = 0
        while time.monotonic() < deadline and not until():
            n += 1
            (payload,) = await handle.process_batch.remote([options_request(worker * 100_000 + n)])
            response = read_message_response(processor_pb2.MessageResponse.FromString(payload))
            assert response.status == 200
            answered += 1

    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    return answered


def test_processor_replicas_scale_up_under_load_and_back_down(serve_started: None) -> None:
    config = from_document(DOCUMENT)
    assert config.processors[0].autoscaling is not None
    serve.run(build_app(config, processor_options={SLOW: {"delay": 0.2}}), name=APP, route_prefix=f"/{APP}")
    try:
        assert running_replicas() == 1
        handle = serve.get_app_handle(APP).options(_by_reference=False)
        grown = False

        def scaled_up() -> bool:
            nonlocal grown
            grown = grown or running_replicas() >= 2
            return grown

        started = time.monotonic()
        answered = asyncio.run(load(handle, 45.0, scaled_up))
        up = time.monotonic() - started
        assert grown, "no second replica within 45 s of load"
        assert answered > 0
        # the load has stopped: back to minReplicas
        down = wait_for(lambda: running_replicas() == 1, timeout=60)
        print(f"autoscaling: 1 -> 2+ replicas after {up:.1f}s of load ({answered} answers), "
              f"back to 1 replica {down:.1f}s after it")
    finally:
        serve.delete(APP)
