"""A request with an unknown method (FOO) is answered 405 Method Not Allowed by the EdgePort
(`unknownMethodAction: Respond`), with Allow listing exactly the methods of its config (RFC 3261 §21.4.6,
§20.5); the server keeps serving."""

from __future__ import annotations

import re

import yaml


def test_unknown_method_gets_405_with_allow(sipp, routr_server) -> None:  # type: ignore[no-untyped-def]
    result = sipp.run("unknown_method/foo.xml")
    sipp.assert_ok(result)
    (answer,) = result.received("SIP/2.0 405")
    assert re.search(r"^CSeq:\s*1 FOO", answer, flags=re.MULTILINE)
    (allow,) = re.findall(r"^Allow:\s*(.*?)\s*$", answer, flags=re.MULTILINE | re.IGNORECASE)
    configured = yaml.safe_load((routr_server.config_dir / "edgeport.yaml").read_text())["spec"]["methods"]
    allowed = [method.strip() for method in allow.split(",")]
    assert sorted(allowed) == sorted(configured)
    assert "FOO" not in allowed
    sipp.assert_ok(sipp.register("1001"))  # still serving
