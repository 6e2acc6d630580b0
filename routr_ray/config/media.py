"""MediaRelay config (a routr-ray kind): the RTPEngine instances the ``rtpengine`` middleware drives (docs/media.md).

    apiVersion: v2beta1
    kind: MediaRelay
    ref: media-relay
    spec:
      rtpengines:                       # ng control ports; a call goes to the first live one in its hash order
        - { ref: rtpengine-01, addr: 127.0.0.1:22222 }
        - { ref: rtpengine-02, addr: 10.0.0.8:22222 }
      timeoutSeconds: 1                 # per instance and command, retransmissions included
      retries: 2                        # retransmissions (same cookie) within timeoutSeconds
      pingIntervalSeconds: 2            # health: a failed ping marks an instance down, a good one up
      deleteDelaySeconds: 0             # optional: sent with every delete (else RTPEngine's delete-delay)
      retryAfterSeconds: 5              # Retry-After of the 503 for a call no instance can relay

The dispatcher config names the middleware (``addr: serve://rtpengine``); this document says where RTPEngine is.
:func:`to_document` / :func:`from_document` turn it into the plain document and back (the Serve options of the
middleware deployment).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from routr_ray.config.problems import Place

DEFAULT_TIMEOUT_SECONDS = 1.0
DEFAULT_RETRIES = 2
DEFAULT_PING_INTERVAL_SECONDS = 2.0
DEFAULT_RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class RtpEngineInstance:
    ref: str
    addr: str  # host:port of the ng control port


@dataclass(frozen=True)
class MediaRelayConfig:
    rtpengines: tuple[RtpEngineInstance, ...]
    ref: str = "media-relay"
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    retries: int = DEFAULT_RETRIES
    ping_interval_seconds: float = DEFAULT_PING_INTERVAL_SECONDS
    delete_delay_seconds: int | None = None
    retry_after_seconds: int = DEFAULT_RETRY_AFTER_SECONDS


def build_media_relay(document: dict[str, Any], place: Place) -> MediaRelayConfig:
    spec: dict[str, Any] = document["spec"]
    at = place.child("spec")
    instances: list[RtpEngineInstance] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(spec["rtpengines"]):
        ref = entry["ref"]
        if ref in seen:
            at.child("rtpengines", index, "ref").error(f"duplicate ref {ref!r}: already used at /spec/rtpengines/"
                                                       f"{seen[ref]}")
        seen.setdefault(ref, index)
        instances.append(RtpEngineInstance(ref, entry["addr"]))
    delete_delay = spec.get("deleteDelaySeconds")
    return MediaRelayConfig(
        rtpengines=tuple(instances),
        ref=document.get("ref", MediaRelayConfig.ref),
        timeout_seconds=float(spec.get("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS)),
        retries=int(spec.get("retries", DEFAULT_RETRIES)),
        ping_interval_seconds=float(spec.get("pingIntervalSeconds", DEFAULT_PING_INTERVAL_SECONDS)),
        delete_delay_seconds=None if delete_delay is None else int(delete_delay),
        retry_after_seconds=int(spec.get("retryAfterSeconds", DEFAULT_RETRY_AFTER_SECONDS)),
    )


def to_document(config: MediaRelayConfig) -> dict[str, Any]:
    """The plain ``MediaRelay`` document of ``config`` (JSON-able; ``from_document(to_document(c)) == c``)."""
    spec: dict[str, Any] = {
        "rtpengines": [{"ref": i.ref, "addr": i.addr} for i in config.rtpengines],
        "timeoutSeconds": config.timeout_seconds,
        "retries": config.retries,
        "pingIntervalSeconds": config.ping_interval_seconds,
        "retryAfterSeconds": config.retry_after_seconds,
    }
    if config.delete_delay_seconds is not None:
        spec["deleteDelaySeconds"] = config.delete_delay_seconds
    return {"apiVersion": "v2beta1", "kind": "MediaRelay", "ref": config.ref, "spec": spec}


def from_document(document: Any, source: str = "<media relay document>") -> MediaRelayConfig:
    """Check a ``MediaRelay`` document and build its config; raises
    :class:`~routr_ray.config.errors.ConfigInvalid` with every error."""
    from routr_ray.config.errors import ConfigInvalid
    from routr_ray.config.problems import Problems
    from routr_ray.config.schema import check_against_schema

    problems = Problems()
    place = Place(problems, source)
    config: MediaRelayConfig | None = None
    if check_against_schema("MediaRelay", document, place):
        config = build_media_relay(document, place)
    problems.log_warnings()
    if problems.errors or config is None:
        raise ConfigInvalid(problems.errors)
    return config
