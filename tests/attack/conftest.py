"""The attack suite (issue 14, DESIGN §6b): each test tries to abuse a port, header, metadata key or token as an
attacker would, on the wire, and asserts that it gains nothing. Tests that need the whole server use the
acceptance harness's session server (``routr_server``, ``sipp``, ``sipsak`` from ``tests/support/acceptance.py``);
the rest build the part under attack in-process over real sockets on loopback. Run inside ``scripts/in-netns``."""
