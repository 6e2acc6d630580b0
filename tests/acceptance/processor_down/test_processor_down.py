"""A request whose processor is down gets 503 Service Unavailable with Retry-After (RFC 3261 §21.5.4, §20.33):
the extras server's dispatcher.yaml (tests/acceptance/config) routes MESSAGE to sip:down@... first to 127.0.0.1:51919, where nothing
listens. Requests the entry does not match still reach Connect."""

from __future__ import annotations

import re
import time


def test_processor_down_gets_503_with_retry_after(sipp_extras) -> None:
    sipp = sipp_extras  # type: ignore[no-untyped-def]
    started = time.monotonic()
    result = sipp.run("processor_down/message_down.xml")
    elapsed = time.monotonic() - started
    sipp.assert_ok(result)
    (answer,) = result.received("SIP/2.0 503")
    assert re.search(r"^CSeq:\s*1 MESSAGE", answer, flags=re.MULTILINE)
    (retry_after,) = re.findall(r"^Retry-After:\s*(\d+)", answer, flags=re.MULTILINE | re.IGNORECASE)
    assert int(retry_after) > 0
    assert elapsed < 5.0, f"the 503 took {elapsed:.1f}s"  # an unreachable processor fails fast
    sipp.assert_ok(sipp.register("1001"))  # other requests still reach Connect
