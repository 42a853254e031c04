#!/usr/bin/env python3
"""A gradflow checkpoint read by other tools: the Python `safetensors` package (numpy) and PyTorch.

Usage: checkpoint_interop.py WRITE_CHECKPOINT DIR [TORCH_PYTHON]
WRITE_CHECKPOINT DIR saves a checkpoint and DIR/expected.json (every tensor it should hold). This script
checks meta.json (format, each file's byte size and sha256, computed here), then loads model.safetensors
and optimizer.safetensors with safetensors.numpy and compares names, dtypes, shapes and values exactly.
With TORCH_PYTHON (an interpreter with torch and safetensors), it runs itself there with --torch DIR,
which loads the same files with safetensors.torch into torch tensors and compares them too.
"""
import hashlib
import json
import pathlib
import subprocess
import sys

DTYPES = {"f32": "float32", "i64": "int64"}


def check_meta(path):
    meta = json.loads((path / "meta.json").read_text())
    assert meta["format"] == "gradflow-checkpoint" and meta["version"] == 1, meta
    assert meta["step"] == 3 and meta["world_size"] == 1, meta
    assert set(meta["files"]) == {"model.safetensors", "optimizer.safetensors"}, meta["files"]
    for name, entry in meta["files"].items():
        data = (path / name).read_bytes()
        assert len(data) == entry["bytes"], f"{name}: {len(data)} bytes, meta.json says {entry['bytes']}"
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], f"{name}: sha256 differs from meta.json"


def check_numpy(path, expected):
    import numpy as np
    from safetensors.numpy import load_file

    for kind in ("model", "optimizer"):
        loaded = load_file(str(path / f"{kind}.safetensors"))
        assert set(loaded) == set(expected[kind]), f"{kind}: {sorted(loaded)} vs {sorted(expected[kind])}"
        for name, want in expected[kind].items():
            got = loaded[name]
            assert str(got.dtype) == DTYPES[want["dtype"]], f"{name}: dtype {got.dtype}"
            assert list(got.shape) == want["shape"], f"{name}: shape {got.shape}, expected {want['shape']}"
            values = np.array(want["values"], dtype=got.dtype).reshape(want["shape"])
            assert np.array_equal(got, values), f"{name}: values differ"
    print(f"safetensors.numpy: {len(expected['model'])} variables and {len(expected['optimizer'])} optimizer "
          "tensors match")


def check_torch(path, expected):
    import torch
    from safetensors.torch import load_file

    dtypes = {"f32": torch.float32, "i64": torch.int64}
    for kind in ("model", "optimizer"):
        loaded = load_file(str(path / f"{kind}.safetensors"))
        assert set(loaded) == set(expected[kind]), f"{kind}: {sorted(loaded)}"
        for name, want in expected[kind].items():
            got = loaded[name]
            assert got.dtype == dtypes[want["dtype"]], f"{name}: dtype {got.dtype}"
            assert list(got.shape) == want["shape"], f"{name}: shape {list(got.shape)}"
            values = torch.tensor(want["values"], dtype=got.dtype).reshape(want["shape"])
            assert torch.equal(got, values), f"{name}: values differ"
    # The Keras names map onto a torch module's parameters: dense_1/kernel is [in, out], Linear's weight
    # is [out, in].
    layer = torch.nn.Linear(3, 5)
    model = load_file(str(path / "model.safetensors"))
    kernel = next(n for n in model if n.endswith("/kernel") and list(model[n].shape) == [3, 5])
    with torch.no_grad():
        layer.weight.copy_(model[kernel].t())
        layer.bias.copy_(model[kernel.replace("/kernel", "/bias")])
    print(f"torch {torch.__version__}: every tensor matches; {kernel} loads into torch.nn.Linear(3, 5)")


def main():
    if sys.argv[1] == "--torch":
        directory = pathlib.Path(sys.argv[2])
        expected = json.loads((directory / "expected.json").read_text())
        check_torch(pathlib.Path(expected["path"]), expected)
        return
    program, directory = sys.argv[1], pathlib.Path(sys.argv[2])
    subprocess.run(["rm", "-rf", str(directory)], check=True)
    directory.mkdir(parents=True)
    subprocess.run([program, str(directory)], check=True)
    expected = json.loads((directory / "expected.json").read_text())
    path = pathlib.Path(expected["path"])
    check_meta(path)
    check_numpy(path, expected)
    if len(sys.argv) > 3:
        subprocess.run([sys.argv[3], __file__, "--torch", str(directory)], check=True)
    print("checkpoint_interop: PASS")


if __name__ == "__main__":
    main()
