"""The SIP benchmark behind ``benchmarks/bench_sip.py``: SIPp against routr-ray (and Kamailio) on loopback."""
