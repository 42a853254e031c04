#!/usr/bin/env python3
"""Runs write_test_events (C++ SummaryWriter) and reads its event file back with TensorBoard.

Usage: tensorboard_readback.py WRITE_TEST_EVENTS_BINARY LOGDIR
Fails (non-zero exit) when TensorBoard cannot read the file, or any tag, step or value differs from what
the C++ program wrote. Expected values are computed here independently, histogram buckets included.
"""
import os
import re
import shutil
import socket
import subprocess
import sys

import numpy as np

try:
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.compat.proto import event_pb2, graph_pb2
    from tensorboard.compat.tensorflow_stub import errors
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New
except ImportError as e:  # a missing TensorBoard is a failure, not a skip: scripts/setup installs it
    sys.exit(f"tensorboard is not importable by {sys.executable} ({e}); run scripts/setup")

checks = 0


def check(cond, what):
    global checks
    if not cond:
        sys.exit(f"FAILED: {what}")
    checks += 1


def tf_default_buckets():
    """TensorFlow's histogram bucket limits (tensorflow/core/lib/histogram/histogram.cc)."""
    pos, v = [], 1.0e-12
    while v < 1.0e20:
        pos.append(v)
        v *= 1.1
    pos.append(sys.float_info.max)
    return [-x for x in reversed(pos)] + [0.0] + pos


def tf_histogram(values):
    """(min, max, num, sum, sum_squares, bucket_limit, bucket) as Histogram::EncodeToProto makes them."""
    limits = tf_default_buckets()
    counts = [0.0] * len(limits)
    for x in values:
        counts[int(np.searchsorted(limits, x, side="right"))] += 1
    out_limits, out_counts, i = [], [], 0
    while i < len(counts):
        end, count = limits[i], counts[i]
        i += 1
        if count <= 0:
            while i < len(counts) and counts[i] <= 0:
                end, count = limits[i], counts[i]
                i += 1
        out_limits.append(end)
        out_counts.append(count)
    return (min(values), max(values), float(len(values)), sum(values), sum(x * x for x in values), out_limits,
            out_counts)


def main():
    binary, logdir = sys.argv[1], sys.argv[2]
    shutil.rmtree(logdir, ignore_errors=True)
    subprocess.run([binary, logdir], check=True)

    files = os.listdir(logdir)
    check(len(files) == 1, f"one event file in {logdir}, found {files}")
    pattern = r"events\.out\.tfevents\.\d{10}\." + re.escape(socket.gethostname())
    check(re.fullmatch(pattern, files[0]) is not None, f"file name {files[0]} matches {pattern}")
    path = os.path.join(logdir, files[0])

    # Strict read: TensorBoard's own TFRecord reader checks both CRCs of every record and raises on damage.
    reader, events = PyRecordReader_New(path), []
    while True:
        try:
            reader.GetNext()
        except errors.OutOfRangeError:
            break
        event = event_pb2.Event()
        event.ParseFromString(reader.record())
        events.append(event)
    check(events[0].file_version == "brain.Event:2", f"first event is file_version, got {events[0]}")
    check(len(events) == 1 + 1 + 20 + 1 + 2,
          f"25 events (version, graph, 20 scalars, text, 2 histograms), got {len(events)}")

    acc = ea.EventAccumulator(logdir, size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0, ea.TENSORS: 0,
                                                     ea.GRAPH: 1, ea.COMPRESSED_HISTOGRAMS: 0})
    acc.Reload()
    tags = acc.Tags()
    check(sorted(tags[ea.SCALARS]) == ["accuracy", "loss"], f"scalar tags {tags[ea.SCALARS]}")
    check(tags[ea.HISTOGRAMS] == ["weights"], f"histogram tags {tags[ea.HISTOGRAMS]}")
    check(tags[ea.TENSORS] == ["notes"], f"tensor tags {tags[ea.TENSORS]}")
    check(tags[ea.GRAPH], "a graph is present")

    for tag, expected in (("loss", lambda s: 1.0 / (s + 1)), ("accuracy", lambda s: 0.1 * s)):
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        check([s for s, _ in got] == list(range(10)), f"{tag} steps {[s for s, _ in got]}")
        for step, value in got:
            want = float(np.float32(expected(step)))
            check(abs(value - want) <= 1e-7, f"{tag}[{step}] = {value}, want {want}")

    weights = [float(np.float32(i) / np.float32(10)) for i in range(-50, 50)]
    hists = acc.Histograms("weights")
    check([h.step for h in hists] == [0, 1], f"histogram steps {[h.step for h in hists]}")
    for h, values in zip(hists, (weights, [1.0, 2.0, 2.0, 3.0, 3.0, 3.0])):
        want = tf_histogram(values)
        got = h.histogram_value
        got_tuple = (got.min, got.max, got.num, got.sum, got.sum_squares, list(got.bucket_limit), list(got.bucket))
        for name, g, w in zip(("min", "max", "num", "sum", "sum_squares"), got_tuple[:5], want[:5]):
            check(abs(g - w) <= 1e-9 * max(1.0, abs(w)), f"histogram step {h.step} {name} = {g}, want {w}")
        check(got_tuple[5] == want[5], f"histogram step {h.step} bucket limits differ from TensorFlow's")
        check(got_tuple[6] == want[6], f"histogram step {h.step} bucket counts {got_tuple[6]}, want {want[6]}")
    check(sum(hists[1].histogram_value.bucket) == 6, "6 values counted")

    notes = acc.Tensors("notes")
    check(len(notes) == 1 and notes[0].step == 0, "one text event at step 0")
    check(list(notes[0].tensor_proto.string_val) == [b"hello **world**"], f"text {notes[0].tensor_proto}")
    check(acc.SummaryMetadata("notes").plugin_data.plugin_name == "text", "text plugin metadata")

    graph = acc.Graph()
    check(isinstance(graph, graph_pb2.GraphDef), "Graph() parses as a GraphDef")
    nodes = [(n.name, n.op, list(n.input)) for n in graph.node]
    check(nodes == [("input", "Placeholder", []), ("dense_1/MatMul", "MatMul", ["input"]),
                    ("dense_1/Relu", "Relu", ["dense_1/MatMul"]), ("dense_2/MatMul", "MatMul", ["dense_1/Relu"])],
          f"graph nodes {nodes}")
    check(graph.node[1].attr["units"].s == b"128", "attr units of dense_1/MatMul")
    print(f"tensorboard readback: {checks} checks passed ({path})")


if __name__ == "__main__":
    main()
