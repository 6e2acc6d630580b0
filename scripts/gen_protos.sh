#!/usr/bin/env bash
# Regenerate routr_ray/proto/gen from protos/*.proto (needs grpcio-tools==1.85.1). Commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m routr_ray.proto.generate "$@"
