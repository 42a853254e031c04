#!/usr/bin/python3
"""The seed's model in PyTorch, the peer for bench/seed_model_vs_pytorch.sh.

Flatten, Linear(784,128)+ReLU, Dropout(0.2), Linear(128,10); Adam(lr=1e-3, eps=1e-7, as Keras); cross-entropy;
shuffled batches; one thread. Prints one JSON line: seconds_per_epoch, test_loss, test_accuracy.
Run with Debian's python3-torch: /usr/bin/python3 bench/pytorch_seed_model.py --epochs 1 --batch-size 32
--device cuda trains on the GPU with the batches copied from host memory step by step, as gradflow's
fit(x, y) does (scripts/device_check runs it beside `fashion_mnist --device cuda`).
"""
import argparse
import gzip
import json
import time

import numpy as np
import torch

# Throughput without the first steps' one-time costs (as examples/example_job.h's kWarmupSteps).
WARMUP_STEPS = 5


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def load_fashion_mnist(d):
    """Training images, labels, test images, labels: flattened f32 images in [0, 1], int64 labels."""
    images = lambda name: torch.tensor(read_idx(f"{d}/{name}"), dtype=torch.float32).reshape(-1, 784) / 255
    labels = lambda name: torch.tensor(read_idx(f"{d}/{name}"), dtype=torch.int64)
    return (images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz"),
            images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz"))


def seed_model():
    """Flatten (done by the loader), Dense(128, relu), Dropout(0.2), Dense(10) (softmax in the loss)."""
    return torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                               torch.nn.Linear(128, 10))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(1)
    torch.manual_seed(42)
    x, y, xt, yt = load_fashion_mnist(args.data_dir)
    model = seed_model().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    warm, steps = None, 0
    for _ in range(args.epochs):
        model.train()
        order = torch.randperm(x.shape[0])
        for i in range(0, x.shape[0], args.batch_size):
            if steps == WARMUP_STEPS:
                warm = time.perf_counter()
            steps += 1
            idx = order[i:i + args.batch_size]
            opt.zero_grad()
            loss = loss_fn(model(x[idx].to(device)), y[idx].to(device))
            loss.backward()
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    end = time.perf_counter()
    seconds = (end - start) / args.epochs
    steady = (x.shape[0] * args.epochs - WARMUP_STEPS * args.batch_size) / (end - warm) if warm else None
    model.eval()
    with torch.no_grad():
        logits = model(xt.to(device))
        test_loss = loss_fn(logits, yt.to(device)).item()
        acc = (logits.argmax(1) == yt.to(device)).float().mean().item()
    print(json.dumps({"seconds_per_epoch": seconds, "samples_per_second": x.shape[0] / seconds,
                      "steady_samples_per_second": steady, "test_loss": test_loss, "test_accuracy": acc}))


if __name__ == "__main__":
    main()
