"""sipsak (Debian `sipsak`) against the proxy over UDP: register with digest, a wrong password (challenged
again, sipsak gives up with exit 2), unregister with expires 0, and an OPTIONS ping. Agent 1002 of config/ as
shipped registers a Contact no other test uses, and removes it."""

from __future__ import annotations

import re

from tests.support.acceptance import CONTACT_PORTS, PASSWORDS

USER = "1002"
CONTACT = f"sip:{USER}@127.0.0.1:{CONTACT_PORTS['sipsak-1002']}"


def _final(result) -> str:  # type: ignore[no-untyped-def]
    """The status line of the last reply sipsak printed."""
    lines = re.findall(r"^SIP/2\.0 \d{3} [^\r\n]*", result.output, flags=re.MULTILINE)
    assert lines, result.report()
    return lines[-1]


def _listed(result, contact: str) -> bool:  # type: ignore[no-untyped-def]
    last_reply = result.output[result.output.rfind("SIP/2.0 200"):]
    return re.search(rf"^Contact:\s*<{re.escape(contact)}>;expires=\d+", last_reply, flags=re.MULTILINE) is not None


def test_sipsak_registers_with_digest_then_unregisters(sipsak) -> None:  # type: ignore[no-untyped-def]
    registered = sipsak.register(USER, PASSWORDS[USER], CONTACT, expires=600)
    assert registered.returncode == 0, registered.report()
    assert "401 Unauthorized" in registered.output and 'realm="sip.local"' in registered.output
    assert _final(registered) == "SIP/2.0 200 OK"
    assert _listed(registered, CONTACT), registered.report()

    unregistered = sipsak.register(USER, PASSWORDS[USER], CONTACT, expires=0)
    assert unregistered.returncode == 0, unregistered.report()
    assert _final(unregistered) == "SIP/2.0 200 OK"
    assert not _listed(unregistered, CONTACT), unregistered.report()

    remaining = sipsak.bindings(USER, PASSWORDS[USER])
    assert remaining.returncode == 0, remaining.report()
    assert not _listed(remaining, CONTACT), remaining.report()


def test_sipsak_wrong_password_is_challenged_again(sipsak) -> None:  # type: ignore[no-untyped-def]
    result = sipsak.register(USER, "not-the-password", CONTACT, expires=600)
    assert result.returncode != 0, result.report()
    challenges = re.findall(r"^SIP/2\.0 401 ", result.output, flags=re.MULTILINE)
    assert len(challenges) == 2, result.report()  # the answer to the credentials is a new challenge
    assert "authorization failed" in result.output
    assert not re.search(r"^SIP/2\.0 200 ", result.output, flags=re.MULTILINE), result.report()


def test_sipsak_options_ping(sipsak) -> None:  # type: ignore[no-untyped-def]
    result = sipsak.run("-s", "sip:127.0.0.1")  # OPTIONS to the proxy itself, sent to -p 127.0.0.1:25060
    assert result.returncode == 0, result.report()
    assert _final(result) == "SIP/2.0 200 OK"
    assert re.search(r"^Allow:.*\bINVITE\b", result.output, flags=re.MULTILINE), result.report()
