"""Thin Ray wrappers: the only package (with the CLI) that imports Ray (DESIGN §2).

Every actor lives in the Ray namespace ``routr``.
"""

NAMESPACE = "routr"
