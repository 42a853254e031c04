"""PyTorch's Adam step on the seed model's four variables (784x128, 128, 128x10, 10: 101,770 parameters) on
the GPU, beside bench/cuda_bench's BM_AdamStepSeedModelCuda: the default, foreach and fused
implementations, each timed as the median of 5 runs of 200 steps with the stream synchronized after every
step, as the benchmark does. Prints one JSON object (microseconds per step).
  python3 bench/pytorch_adam_step.py
"""
import json
import statistics
import time

import torch


def time_adam(**kwargs):
    torch.manual_seed(0)
    shapes = [(784, 128), (128,), (128, 10), (10,)]
    params = [torch.nn.Parameter(torch.randn(s, device="cuda") * 0.1) for s in shapes]
    for p in params:
        p.grad = torch.randn_like(p) * 0.01
    opt = torch.optim.Adam(params, lr=1e-3, eps=1e-7, **kwargs)
    opt.step()
    torch.cuda.synchronize()
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(200):
            opt.step()
            torch.cuda.synchronize()
        runs.append((time.perf_counter() - start) / 200 * 1e6)
    return statistics.median(runs)


if __name__ == "__main__":
    result = {"default_us": time_adam(), "foreach_us": time_adam(foreach=True), "fused_us": time_adam(fused=True)}
    print(json.dumps(result))
