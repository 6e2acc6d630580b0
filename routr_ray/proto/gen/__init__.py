"""Generated protobuf and gRPC code (routr_ray.proto.generate). Do not edit."""
