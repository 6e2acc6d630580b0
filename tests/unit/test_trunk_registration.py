"""Outbound trunk registration (issue 15 item 1), the sans-I/O core and its asyncio driver, on a fake clock.

The refresh for granted intervals of 30, 60 and 120 s is proven here without waiting: the clock is a number the
test moves (the refresh is due at half the grant: 15, 30, 60 s). tests/acceptance/trunks runs one real refresh on
the wire (a 30 s grant, refreshed after 15 s) with SIPp as the provider.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import pytest

from routr_ray.sip import Request, Response, parse
from routr_ray.sip.digest import DigestAlgorithm, DigestAuthenticator, find_credentials
from routr_ray.trunks.contact_token import TrunkContactTokens
from routr_ray.trunks.registrar import TrunkRegistrar
from routr_ray.trunks.registration import Registration, RegistrationSpec, RegState

REALM = "provider.example"
SPEC = RegistrationSpec(trunk_ref="trunk-01", target="sip:127.0.0.1:5080", request_uri="sip:127.0.0.1:5080",
                        aor="sip:trunk01@127.0.0.1", username="trunk01", password="1234",
                        contact_token="TOKEN", expires=600)


@dataclass
class FakeProvider:
    """A registrar that challenges, checks digest and grants `grant` seconds (as the Contact's expires)."""

    grant: int = 60
    algorithms: tuple[DigestAlgorithm, ...] = (DigestAlgorithm.MD5,)
    password: str = "1234"
    min_expires: int | None = None
    list_binding: bool = True
    now: float = 0.0
    received: list[Request] = field(default_factory=list)
    fail_with: int | None = None

    def __post_init__(self) -> None:
        self.digest = DigestAuthenticator(b"k" * 32, algorithms=self.algorithms, nonce_ttl=3600)

    def new_nonces(self) -> None:
        self.digest = DigestAuthenticator(b"n" * 32 + bytes([len(self.received) % 256]),
                                          algorithms=self.algorithms, nonce_ttl=3600)

    def __call__(self, request: Request) -> Response:
        request = on_the_wire(request)
        assert isinstance(request, Request)
        self.received.append(request)
        if self.fail_with is not None:
            return request.make_response(self.fail_with)
        creds = find_credentials(request.headers.get_all("Authorization"), REALM)
        if creds is None or not self.digest.verify(creds, method="REGISTER", realm=REALM, now=self.now,
                                                   password=self.password).ok:
            response = request.make_response(401, to_tag="p1")
            for value in self.digest.challenge(REALM, now=self.now):
                response.headers.add("WWW-Authenticate", value)
            return response
        expires = request.expires
        if self.min_expires is not None and expires is not None and expires < self.min_expires:
            response = request.make_response(423, to_tag="p1")
            response.headers.add("Min-Expires", str(self.min_expires))
            return response
        response = request.make_response(200, to_tag="p1")
        if self.list_binding:
            (contact,) = request.contacts
            uri = str(contact.uri).replace("0.0.0.0", "192.0.2.10:5060")
            response.headers.add("Contact", f"<{uri}>;expires={self.grant}")
            response.headers.add("Contact", "<sip:someone-else@192.0.2.99>;expires=3600")
        return response


def on_the_wire(request: Request) -> Request:
    """The request as the EdgePort sends it: with its Via (edge/originate.py adds it)."""
    parsed = parse(bytes(request).replace(b"Via: SIP/2.0/UDP 0.0.0.0;rport",
                                          b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKtest;rport"))
    assert isinstance(parsed, Request)
    return parsed


def run_round(registration: Registration, provider: FakeProvider) -> None:
    request: Request | None = registration.request(provider.now)
    while request is not None:
        request = registration.on_response(provider(request), provider.now)


def test_the_register_is_what_sip_connect_and_gin_expect() -> None:
    registration = Registration(SPEC, now=0.0)
    request = on_the_wire(registration.request(0.0))
    assert request.uri == "sip:127.0.0.1:5080"
    assert request.from_ is not None and str(request.from_.uri) == "sip:trunk01@127.0.0.1" and request.from_.tag
    assert request.to is not None and str(request.to.uri) == "sip:trunk01@127.0.0.1" and request.to.tag is None
    (contact,) = request.contacts
    assert contact.uri.user is None and "bnc" in contact.uri.params and contact.uri.params["rtk"] == "TOKEN"
    assert request.headers.get("Require") == "gin" and request.headers.get("Proxy-Require") == "gin"
    assert request.headers.get("Supported") == "path, gin"
    assert request.expires == 600


def test_setup_answers_the_challenge_and_takes_the_contact_expires() -> None:
    provider = FakeProvider(grant=30)
    registration = Registration(SPEC, now=0.0)
    run_round(registration, provider)
    first, second = provider.received
    assert "Authorization" not in first.headers and "Authorization" in second.headers
    assert second.call_id == first.call_id and second.cseq.seq == first.cseq.seq + 1  # type: ignore[union-attr]
    status = registration.status()
    assert status.state is RegState.REGISTERED and status.granted == 30 and status.expires_in(0.0) == 30


def test_sha256_is_chosen_when_both_are_offered() -> None:
    provider = FakeProvider(algorithms=(DigestAlgorithm.MD5, DigestAlgorithm.SHA256))
    registration = Registration(SPEC, now=0.0)
    run_round(registration, provider)
    assert "algorithm=SHA-256" in provider.received[-1].headers.get("Authorization")  # type: ignore[operator]
    assert registration.state is RegState.REGISTERED


@pytest.mark.parametrize("grant", [30, 60, 120])
def test_refresh_at_half_the_granted_interval_on_a_fake_clock(grant: int) -> None:
    """A grant of 30/60/120 s is refreshed at 15/30/60 s, before it lapses, again and again."""
    provider = FakeProvider(grant=grant)
    registration = Registration(SPEC, now=0.0)
    run_round(registration, provider)
    for _ in range(3):
        assert registration.due == pytest.approx(provider.now + grant / 2)
        assert registration.due < registration.expires_at  # type: ignore[operator]
        provider.now = registration.due
        sent = len(provider.received)
        run_round(registration, provider)
        refresh = provider.received[sent]
        assert "Authorization" in refresh.headers  # the last credentials again (nc + 1): one round trip
        assert len(provider.received) == sent + 1
        assert registration.state is RegState.REGISTERED and registration.granted == grant


def test_a_401_with_a_new_nonce_on_refresh_is_answered() -> None:
    provider = FakeProvider(grant=30)
    registration = Registration(SPEC, now=0.0)
    run_round(registration, provider)
    provider.new_nonces()  # the provider forgot our nonce: our refresh is challenged again
    provider.now = registration.due
    sent = len(provider.received)
    run_round(registration, provider)
    assert len(provider.received) == sent + 2
    assert registration.state is RegState.REGISTERED and registration.registrations == 2


def test_wrong_credentials_fail_without_looping() -> None:
    provider = FakeProvider(password="other")
    registration = Registration(SPEC, now=0.0, rng=random.Random(1))
    run_round(registration, provider)
    assert len(provider.received) == 2  # one answer to the challenge, no more
    assert registration.state is RegState.FAILED and "401" in registration.last_error


def test_423_is_followed_with_min_expires() -> None:
    provider = FakeProvider(min_expires=900)
    registration = Registration(SPEC, now=0.0)
    run_round(registration, provider)
    assert registration.state is RegState.REGISTERED
    assert provider.received[-1].expires == 900


def test_a_200_without_our_binding_is_a_failure_and_retried() -> None:
    provider = FakeProvider(list_binding=False)
    registration = Registration(SPEC, now=0.0, base_backoff=30, rng=random.Random(2))
    run_round(registration, provider)
    assert registration.state is RegState.FAILED and "without a binding" in registration.last_error
    assert 15 <= registration.due <= 30


def test_back_off_doubles_and_is_capped() -> None:
    provider = FakeProvider(fail_with=503)
    registration = Registration(SPEC, now=0.0, base_backoff=30, max_backoff=200, rng=random.Random(3))
    waits = []
    for _ in range(6):
        run_round(registration, provider)
        waits.append(registration.due - provider.now)
        provider.now = registration.due
    for failures, wait in enumerate(waits, start=1):
        ceiling = min(200, 30 * 2 ** (failures - 1))
        assert ceiling / 2 <= wait <= ceiling
    assert registration.failures == 6 and registration.status().expires_at is None


def test_retry_after_of_a_503_is_honoured() -> None:
    registration = Registration(SPEC, now=0.0, base_backoff=1, rng=random.Random(4))
    request = registration.request(0.0)
    response = request.make_response(503)
    response.headers.add("Retry-After", "120")
    assert registration.on_response(response, 0.0) is None
    assert registration.due == 120


def test_the_contact_token_is_the_trunks_and_only_ours() -> None:
    tokens = TrunkContactTokens(b"k" * 32)
    assert tokens.proves("trunk-01", tokens.token("trunk-01"))
    assert not tokens.proves("trunk-02", tokens.token("trunk-01"))
    assert not tokens.proves("trunk-01", "")
    assert TrunkContactTokens(b"x" * 32).token("trunk-01") != tokens.token("trunk-01")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_the_driver_registers_refreshes_and_reports_on_a_fake_clock() -> None:
    clock = FakeClock()
    provider = FakeProvider(grant=60)
    changes = []

    async def send(request: Request, target: str) -> Response | None:
        assert target == SPEC.target
        provider.now = clock.now
        return provider(request)

    registrar = TrunkRegistrar(send, clock=clock, on_change=changes.append)
    registrar.update([SPEC])
    await registrar.step()
    assert [s.state for s in changes] == [RegState.REGISTERED]
    clock.now = 29.0
    await registrar.step()
    assert len(changes) == 1  # not due yet
    clock.now = 30.0
    await registrar.step()
    assert len(changes) == 2 and changes[-1].expires_in(30.0) == 60
    registrar.update([])
    assert registrar.statuses() == []


async def test_the_driver_counts_a_lost_request_as_a_failure() -> None:
    clock = FakeClock()

    async def send(request: Request, target: str) -> Response | None:
        return None

    registrar = TrunkRegistrar(send, clock=clock, base_backoff=10)
    registrar.update([SPEC])
    await registrar.step()
    (status,) = registrar.statuses()
    assert status.state is RegState.FAILED and "no response" in status.last_error


async def test_the_run_loop_wakes_on_update() -> None:
    sent = asyncio.Event()

    async def send(request: Request, target: str) -> Response | None:
        sent.set()
        return None

    registrar = TrunkRegistrar(send)
    task = asyncio.create_task(registrar.run())
    await asyncio.sleep(0.01)
    registrar.update([SPEC])
    await asyncio.wait_for(sent.wait(), 2)
    task.cancel()
