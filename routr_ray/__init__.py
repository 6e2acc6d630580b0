"""routr-ray: a SIP server implementing the Routr v2 architecture on Ray."""

__version__ = "0.1.0"
