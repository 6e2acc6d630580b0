"""Routr v2 protobufs: generated code in ``routr_ray.proto.gen``, SIP conversion in ``routr_ray.proto.convert``."""
