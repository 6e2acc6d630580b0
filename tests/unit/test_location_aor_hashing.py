"""AOR canonical form (RFC 3261 §10.3 step 5), jump hash, and the redis parameter parser."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from routr_ray.location import LocationError, LocationErrorCode, jump_hash, normalize_aor, shard_for_aor
from routr_ray.location.hashing import key_of
from routr_ray.location.stores import MemoryStore, create_store
from routr_ray.location.stores.redis import RedisSettings, RedisStore, parse_redis_parameters


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("sip:1001@sip.local", "sip:1001@sip.local"),
        ("SIP:1001@Sip.LOCAL", "sip:1001@sip.local"),
        ("sip:1001@sip.local;transport=udp;lr", "sip:1001@sip.local"),
        ("sip:1001@sip.local?subject=hi", "sip:1001@sip.local"),
        ("sip:Alice@sip.local", "sip:Alice@sip.local"),  # user part is case-sensitive (§19.1.4)
        ("sip:alice%40home@sip.local", "sip:alice@home@sip.local"),  # escapes are unescaped
        ("sip:alice:secret@sip.local", "sip:alice@sip.local"),  # a password is not part of the AOR
        ("sip:1001@sip.local:5070;x=y", "sip:1001@sip.local:5070"),
        ("sips:bob@[2001:DB8::1]:5061", "sips:bob@[2001:db8::1]:5061"),
        ("sip:sip.local", "sip:sip.local"),
        ("  sip:1001@sip.local  ", "sip:1001@sip.local"),
        ("backend:voice", "backend:voice"),
        ("Backend:Voice;x=1", "backend:Voice"),
    ],
)
def test_canonical_form(given: str, canonical: str) -> None:
    assert normalize_aor(given) == canonical


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("tel:+1555", "unsupported AOR scheme"),
        ("http://x", "unsupported AOR scheme"),
        ("1001@sip.local", "unsupported AOR scheme"),
        ("", "empty"),
        ("backend:", "no reference"),
        ("sip:", "no valid host"),
        ("sip:@sip.local", "empty user"),
        ("sip:1001@sip.local:99999", "invalid port"),
        ("sip:1001@[::1", "unterminated IPv6"),
        ("sip:" + "a" * 2000 + "@x", "longer than"),
    ],
)
def test_bad_aor_is_invalid_argument_with_a_reason(bad: str, reason: str) -> None:
    with pytest.raises(LocationError, match=reason) as info:
        normalize_aor(bad)
    assert info.value.code is LocationErrorCode.INVALID_ARGUMENT


# ---- jump hash -------------------------------------------------------------------------------


def test_jump_hash_known_values_and_range() -> None:
    assert [jump_hash(k, 1) for k in range(10)] == [0] * 10
    assert jump_hash(0, 100) == 0  # key 0 never leaves bucket 0 (well-known property)
    assert all(0 <= jump_hash(k, 7) < 7 for k in range(1000))
    with pytest.raises(ValueError):
        jump_hash(1, 0)


def test_mapping_is_stable_across_calls_and_spellings() -> None:
    digest = hashlib.blake2b(b"sip:1001@sip.local", digest_size=8).digest()
    assert key_of("sip:1001@sip.local") == int.from_bytes(digest, "big")
    first = [shard_for_aor(f"sip:u{i}@sip.local", 4) for i in range(200)]
    assert first == [shard_for_aor(f"sip:u{i}@sip.local", 4) for i in range(200)]
    assert shard_for_aor("SIP:u1@Sip.Local;transport=tcp", 4) == shard_for_aor("sip:u1@sip.local", 4)


PINNED_4 = [1, 1, 1, 2, 2, 2, 3, 0, 1, 2, 3, 2]


def test_mapping_is_pinned() -> None:
    # The mapping must never change between releases: a restarted shard reloads keys by shard id.
    assert [shard_for_aor(f"sip:u{i}@sip.local", 4) for i in range(12)] == PINNED_4


def test_distribution_is_roughly_even() -> None:
    counts = Counter(shard_for_aor(f"sip:user{i}@example.com", 4) for i in range(40_000))
    assert set(counts) == {0, 1, 2, 3}
    assert all(9_400 <= n <= 10_600 for n in counts.values()), counts


@pytest.mark.parametrize("n", [2, 4, 8])
def test_growing_moves_about_one_in_n_plus_one_keys_to_the_new_shard(n: int) -> None:
    keys = [f"sip:user{i}@example.com" for i in range(20_000)]
    before = [shard_for_aor(k, n) for k in keys]
    after = [shard_for_aor(k, n + 1) for k in keys]
    moved = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    share = len(moved) / len(keys)
    assert abs(share - 1 / (n + 1)) < 0.02, share
    assert all(a == n for _, a in moved)  # keys only ever move to the new shard


# ---- provider parameters ---------------------------------------------------------------------


def test_routr_parameter_string() -> None:
    settings = parse_redis_parameters("host=redis.internal, port=6380,username=loc,password=s3cret,secure=true")
    assert settings == RedisSettings("redis.internal", 6380, "loc", "s3cret", True, 0)
    assert "s3cret" not in repr(settings)
    assert parse_redis_parameters("") == RedisSettings()
    assert parse_redis_parameters("host=10.0.0.5") == RedisSettings(host="10.0.0.5")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://localhost:6390", RedisSettings("localhost", 6390)),
        ("rediss://user:p%40ss@cache.example.com:6380/2", RedisSettings("cache.example.com", 6380, "user", "p@ss", True, 2)),
        ("redis://:pw@127.0.0.1", RedisSettings("127.0.0.1", 6379, None, "pw")),
    ],
)
def test_redis_urls(url: str, expected: RedisSettings) -> None:
    assert parse_redis_parameters(url) == expected


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("host=x,colour=blue", "unknown redis parameter 'colour'"),
        ("host", "not key=value"),
        ("port=abc", "not a number"),
        ("port=70000", "not a number"),
        ("secure=maybe", "not true/false"),
        ("http://x:1", "redis:// or rediss://"),
        ("redis://x:notaport", "invalid port"),
    ],
)
def test_bad_parameters_name_the_problem(bad: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_redis_parameters(bad)


async def test_create_store_by_provider() -> None:
    assert isinstance(create_store("MEMORY", shard_id=3), MemoryStore)
    store = create_store("redis", "host=127.0.0.1,port=6390", shard_id="1")
    assert isinstance(store, RedisStore) and store.shard_id == "1" and store.settings.port == 6390
    assert store.binding_key("sip:a@b", "h|5060|0") == "routr:location:{1}:bind:sip:a@b|h|5060|0"
    await store.close()
    with pytest.raises(ValueError, match="unknown location cache provider"):
        create_store("postgres")
    with pytest.raises(ValueError, match="shard id"):
        RedisStore(RedisSettings(), "a{b}")
