"""Small helpers shared by the gRPC servers (Location API, standalone processors)."""
