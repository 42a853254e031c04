#!/usr/bin/python3
"""The seed's model under PyTorch DDP with the Gloo backend, the peer for bench/data_parallel_scaling.sh.

Same model and optimizer as bench/pytorch_seed_model.py; each rank takes its half of every global batch
(per-rank batch --batch-size, the shuffled order shared through the seed), one thread per rank.
Started by torch's own launcher: /usr/bin/python3 -m torch.distributed.run --nproc_per_node 2
bench/pytorch_ddp_seed_model.py --batch-size 32. Rank 0 prints one JSON line: seconds_per_epoch,
samples_per_second (global), steady_samples_per_second (the same from step WARMUP_STEPS on), test_accuracy.
"""
import argparse
import json
import os
import time

import torch
import torch.distributed as dist

from pytorch_seed_model import load_fashion_mnist, seed_model

# Throughput without the first steps' one-time costs (as examples/example_job.h's kWarmupSteps).
WARMUP_STEPS = 5


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    args = p.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(42)
    x, y, xt, yt = load_fashion_mnist(args.data_dir)
    model = seed_model()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.Adam(ddp.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    global_batch = args.batch_size * world
    dist.barrier()
    start = time.perf_counter()
    warm, steps = None, 0
    for _ in range(args.epochs):
        ddp.train()
        order = torch.randperm(x.shape[0])  # the same on every rank: same seed
        for i in range(0, x.shape[0], global_batch):
            if steps == WARMUP_STEPS:
                warm = time.perf_counter()
            steps += 1
            idx = order[i:i + global_batch][rank::world]
            opt.zero_grad()
            loss = loss_fn(ddp(x[idx]), y[idx])
            loss.backward()
            opt.step()
    dist.barrier()
    end = time.perf_counter()
    seconds = (end - start) / args.epochs
    steady = (x.shape[0] * args.epochs - WARMUP_STEPS * global_batch) / (end - warm) if warm else None
    if rank == 0:
        model.eval()
        with torch.no_grad():
            acc = (model(xt).argmax(1) == yt).float().mean().item()
        print(json.dumps({"seconds_per_epoch": seconds, "samples_per_second": x.shape[0] / seconds,
                          "steady_samples_per_second": steady, "test_accuracy": acc}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
