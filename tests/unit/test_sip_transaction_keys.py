"""Transaction matching keys (RFC 3261 §17.1.3, §17.2.3, §9.2) and the bounded table."""

from __future__ import annotations

import pytest

from routr_ray.sip.transaction_keys import (
    MAGIC_COOKIE,
    ClientKey,
    LegacyServerKey,
    ServerKey,
    TransactionTable,
    cancel_target_key,
    client_key,
    is_rfc3261_branch,
    legacy_server_key,
    make_branch,
    sent_by,
    server_key,
)

BRANCH = "z9hG4bK776asdhds"


@pytest.mark.parametrize(
    ("branch", "expected"),
    [
        (BRANCH, True),
        ("z9hG4bK", False),  # cookie alone
        ("776asdhds", False),  # RFC 2543 client
        ("Z9HG4BK776", False),  # the cookie is compared exactly
        (None, False),
    ],
)
def test_is_rfc3261_branch(branch: str | None, expected: bool) -> None:
    assert is_rfc3261_branch(branch) is expected


def test_make_branch() -> None:
    assert make_branch("abc") == "z9hG4bKabc"
    branches = {make_branch() for _ in range(100)}
    assert len(branches) == 100
    assert all(b.startswith(MAGIC_COOKIE) and len(b) > 20 for b in branches)


def test_sent_by_normalisation() -> None:
    assert sent_by("PC33.Atlanta.COM", 5060) == "pc33.atlanta.com:5060"
    assert sent_by("[2001:db8::10]", 5070) == "2001:db8::10:5070"
    assert sent_by("2001:DB8::10") == "2001:db8::10"


def test_server_key_retransmission_matches_and_ack_maps_to_invite() -> None:
    invite = server_key(BRANCH, sent_by("client.example.com", 5060), "INVITE")
    assert invite == ServerKey(BRANCH, "client.example.com:5060", "INVITE")
    assert server_key(BRANCH, sent_by("CLIENT.example.com", 5060), "invite") == invite
    # §17.2.3: an ACK (for a non-2xx) shares the INVITE's branch and matches its transaction.
    assert server_key(BRANCH, "client.example.com:5060", "ACK") == invite
    # Different sent-by (another client reusing a branch) or method: another transaction.
    assert server_key(BRANCH, "other.example.com:5060", "INVITE") != invite
    assert server_key(BRANCH, "client.example.com:5060", "CANCEL") != invite
    assert server_key(BRANCH, "client.example.com:5060", "BYE") != invite


def test_cancel_finds_its_invite() -> None:
    invite = server_key(BRANCH, "client.example.com:5060", "INVITE")
    cancel = server_key(BRANCH, "client.example.com:5060", "CANCEL")
    assert cancel is not None and cancel.method == "CANCEL"
    assert cancel_target_key(cancel) == invite


def test_rfc2543_fallback_key() -> None:
    assert server_key("776asdhds", "client.example.com", "INVITE") is None
    assert server_key(None, "client.example.com", "INVITE") is None
    common = dict(
        request_uri="sip:bob@biloxi.com",
        from_tag="1928301774",
        call_id="a84b4c76e66710",
        cseq_seq=314159,
        top_via="SIP/2.0/UDP pc33.atlanta.com;branch=776asdhds",
    )
    invite = legacy_server_key(method="INVITE", **common)
    assert isinstance(invite, LegacyServerKey)
    assert legacy_server_key(method="ACK", **common) == invite
    assert legacy_server_key(method="INVITE", **{**common, "cseq_seq": 314160}) != invite
    assert legacy_server_key(method="INVITE", **{**common, "from_tag": "x"}) != invite
    cancel = legacy_server_key(method="CANCEL", **common)
    assert cancel != invite and cancel_target_key(cancel) == invite
    assert legacy_server_key(method="INVITE", **{**common, "from_tag": None}).from_tag == ""


def test_client_key_uses_branch_and_cseq_method() -> None:
    assert client_key(BRANCH, "invite") == ClientKey(BRANCH, "INVITE")
    # §17.1.3: the 200 for a CANCEL shares the INVITE's branch but belongs to the CANCEL transaction.
    assert client_key(BRANCH, "CANCEL") != client_key(BRANCH, "INVITE")


def test_table_is_bounded() -> None:
    table: TransactionTable[str, int] = TransactionTable(max_size=2)
    assert table.add("a", 1) and table.add("b", 2)
    assert table.full
    assert not table.add("c", 3)
    assert "c" not in table and len(table) == 2
    assert table.add("a", 10)  # replacing an existing key is allowed when full
    assert table.get("a") == 10
    assert table.remove("a") == 10
    assert table.remove("a") is None
    assert table.add("c", 3)
    assert sorted(table) == ["b", "c"]
    assert sorted(table.values()) == [2, 3]
    with pytest.raises(ValueError):
        TransactionTable(0)
