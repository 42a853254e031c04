#!/usr/bin/env python3
"""Runs tensorboard_fit (model.fit with the TensorBoard callback) and checks its logdir with TensorBoard.

Usage: tensorboard_callback_readback.py TENSORBOARD_FIT_BINARY LOGDIR
Checks: train/ and validation/ event files; epoch_loss and epoch_accuracy per epoch equal to fit's History
(train) and its val_* entries (validation); batch_* scalars at every 2nd global step; a histogram per
weight per epoch; the layer graph. Exits non-zero on any difference.
"""
import json
import os
import shutil
import subprocess
import sys

try:
    from tensorboard.backend.event_processing import event_accumulator as ea
except ImportError as e:  # a missing TensorBoard is a failure, not a skip: scripts/setup installs it
    sys.exit(f"tensorboard is not importable by {sys.executable} ({e}); run scripts/setup")


def fail(what):
    sys.exit(f"FAILED: {what}")


def load(path):
    acc = ea.EventAccumulator(path, size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0})
    acc.Reload()
    return acc


def main():
    binary, logdir = sys.argv[1], sys.argv[2]
    shutil.rmtree(logdir, ignore_errors=True)
    history = json.loads(subprocess.run([binary, logdir], check=True, capture_output=True, text=True).stdout)
    train, validation = load(os.path.join(logdir, "train")), load(os.path.join(logdir, "validation"))
    for run, acc, prefix in (("train", train, ""), ("validation", validation, "val_")):
        for metric in ("loss", "accuracy"):
            events = acc.Scalars(f"epoch_{metric}")
            want = history[prefix + metric]
            if [e.step for e in events] != list(range(len(want))):
                fail(f"{run}/epoch_{metric} steps {[e.step for e in events]}")
            for e, w in zip(events, want):
                if abs(e.value - w) > 1e-4 * max(1.0, abs(w)):
                    fail(f"{run}/epoch_{metric} step {e.step}: {e.value} != History's {w}")
    batch_steps = [e.step for e in train.Scalars("batch_loss")]
    if batch_steps != list(range(2, 13, 2)):  # 3 epochs x 4 steps, every 2nd global step
        fail(f"batch_loss steps {batch_steps}")
    histograms = train.Tags()["histograms"]
    for weight in ("dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"):
        if weight not in histograms or [e.step for e in train.Histograms(weight)] != [0, 1, 2]:
            fail(f"histogram {weight}: tags {histograms}")
    graph = train.Graph()
    names = [n.name for n in graph.node]
    if names != ["input", "dense", "dense_1"] or graph.node[2].input != ["dense"]:
        fail(f"layer graph nodes {names}")
    print("tensorboard callback: all checks passed")


if __name__ == "__main__":
    main()
