#!/usr/bin/env bash
# Enforces the folder dependency direction (docs/architecture.md):
#   core/ never includes MPI, NCCL, Gloo or gRPC headers, nor distributed/, strategies/, launcher/ code;
#   launcher/ never includes core/ headers, and nothing built from launcher/ links libgradflow_core.
# Usage: check_layering.sh SOURCE_DIR [BUILD_DIR]. Prints each violation; exits 1 if there is any.
set -uo pipefail
src=${1:?source dir}
build=${2:-}
violations=0

report() {
  echo "layering violation: $*"
  violations=$((violations + 1))
}

if [[ -d "$src/core" ]]; then
  while IFS= read -r hit; do
    report "core/ must not include communication libraries: $hit"
  done < <(grep -rnE '^\s*#\s*include\s*[<"](mpi\.h|mpi/|nccl\.h|nccl_net\.h|gloo/|grpc|grpcpp/)' "$src/core")
  while IFS= read -r hit; do
    report "core/ must not include code from a higher layer: $hit"
  done < <(grep -rnE '^\s*#\s*include\s*"(distributed|strategies|launcher|cluster)/' "$src/core")
fi

if [[ -d "$src/launcher" ]]; then
  while IFS= read -r hit; do
    report "launcher/ must not include core/: $hit"
  done < <(grep -rnE '^\s*#\s*include\s*"core/' "$src/launcher")
fi

if [[ -n "$build" && -d "$build/launcher" ]]; then
  while IFS= read -r artifact; do
    if readelf -d "$artifact" 2>/dev/null | grep -q 'NEEDED.*libgradflow_core'; then
      report "launcher artifact links libgradflow_core: $artifact"
    fi
  done < <(find "$build/launcher" "$build/bin" -maxdepth 1 -type f \( -name 'gfrun*' -o -name '*launcher*' \) 2>/dev/null)
fi

if ((violations > 0)); then
  echo "$violations layering violation(s)"
  exit 1
fi
echo "layering ok: $src"
