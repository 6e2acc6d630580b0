"""The gRPC ports' token check and the rule that keeps them closed by default (routr_ray/grpcutil/auth.py)."""

from __future__ import annotations

import pytest

from routr_ray.grpcutil.auth import (
    OpenPortRefused,
    bearer_metadata,
    is_loopback_host,
    refuse_open_port,
    split_host_port,
    token_ok,
)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "LOCALHOST",
                                  "::ffff:127.0.0.1"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "10.0.0.5", "2001:db8::1", "dispatcher",
                                  "localhost.example", ""])
def test_everything_else_is_not_loopback(host: str) -> None:
    assert not is_loopback_host(host)


def test_split_host_port() -> None:
    assert split_host_port("[::1]:51901") == ("::1", 51901)
    assert split_host_port(":51901") == ("0.0.0.0", 51901)


def test_an_open_port_needs_a_token() -> None:
    refuse_open_port("127.0.0.1:51901", None, what="x", how="y")
    refuse_open_port("0.0.0.0:51901", "t0ken", what="x", how="y")
    with pytest.raises(OpenPortRefused, match=r"the port would listen on 0\.0\.0\.0:51901 without a token.*set a "
                                              r"token \(spec\.token\)"):
        refuse_open_port("0.0.0.0:51901", None, what="the port", how="spec.token")
    with pytest.raises(OpenPortRefused):
        refuse_open_port("[::]:51901", "", what="x", how="y")


def test_token_metadata_round_trip() -> None:
    assert token_ok("s3cret", bearer_metadata("s3cret"))
    assert token_ok("s3cret", [("X-Routr-Token", b"s3cret")])
    assert not token_ok("s3cret", bearer_metadata("other"))
    assert not token_ok("s3cret", [("authorization", "Basic s3cret")])
    assert bearer_metadata(None) == ()
