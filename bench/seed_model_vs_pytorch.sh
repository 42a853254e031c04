#!/usr/bin/env bash
# The seed's model on Fashion-MNIST, one process and one thread, gradflow (build/bin/fashion_mnist) and
# PyTorch (Debian's python3-torch) alternating in one run, at batch 32 and 256. Prints each run and the
# median seconds per epoch of both, with their ratio (gradflow / PyTorch; the target is <= 0.5 at batch 32).
# Usage: bench/seed_model_vs_pytorch.sh [repetitions=3] [epochs=1]
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
epochs=${2:-1}
command -v /usr/bin/python3 >/dev/null && /usr/bin/python3 -c "import torch" 2>/dev/null || {
  echo "needs Debian's python3-torch (apt-get install python3-torch)" >&2
  exit 2
}
[[ -x build/bin/fashion_mnist ]] || scripts/build
export OMP_WAIT_POLICY=passive
out=$(mktemp -d)
for batch in 32 256; do
  for ((r = 0; r < reps; r++)); do
    build/bin/fashion_mnist --epochs "$epochs" --batch-size "$batch" --threads 1 --verbose 0 \
      --metrics-json "$out/gf_${batch}_$r.json" > /dev/null
    /usr/bin/python3 bench/pytorch_seed_model.py --epochs "$epochs" --batch-size "$batch" > "$out/pt_${batch}_$r.json"
  done
done
/usr/bin/python3 - "$out" "$reps" <<'PY'
import json, statistics, sys, pathlib
out, reps = pathlib.Path(sys.argv[1]), int(sys.argv[2])
for batch in (32, 256):
    gf = [json.loads((out / f"gf_{batch}_{r}.json").read_text()) for r in range(reps)]
    pt = [json.loads((out / f"pt_{batch}_{r}.json").read_text()) for r in range(reps)]
    g = statistics.median(x["seconds_per_epoch"] for x in gf)
    p = statistics.median(x["seconds_per_epoch"] for x in pt)
    print(f"batch {batch}: gradflow {g:.2f} s/epoch (acc {gf[0]['test_accuracy']:.4f}), "
          f"pytorch {p:.2f} s/epoch (acc {pt[0]['test_accuracy']:.4f}), ratio {g / p:.2f}")
PY
rm -rf "$out"
