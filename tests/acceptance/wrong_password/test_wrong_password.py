"""A wrong password gets a new challenge (401 with WWW-Authenticate), never 200 (RFC 3261 §22.2)."""

from __future__ import annotations


def test_wrong_password_is_challenged_again(sipp) -> None:  # type: ignore[no-untyped-def]
    result = sipp.run("wrong_password/register_wrong_password.xml", keys={"aor_user": "1002"},
                      auth=("1002", "not-the-password"))
    sipp.assert_ok(result)
    challenges = result.received("SIP/2.0 401")
    assert len(challenges) == 2
    assert not result.received("SIP/2.0 200")
