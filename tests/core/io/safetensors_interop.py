#!/usr/bin/env python3
"""The Python `safetensors` package reads what gradflow wrote, and gradflow reads what it wrote.

Usage: safetensors_interop.py WRITE_PROGRAM DIR
WRITE_PROGRAM DIR/from_gradflow.safetensors writes known tensors; this script checks them with
safetensors.numpy, then writes DIR/from_python.safetensors and runs WRITE_PROGRAM --check on it.
"""
import pathlib
import subprocess
import sys

import numpy as np
from safetensors.numpy import load_file, save_file


def main():
    program, directory = sys.argv[1], pathlib.Path(sys.argv[2])
    directory.mkdir(parents=True, exist_ok=True)
    ours = directory / "from_gradflow.safetensors"
    subprocess.run([program, str(ours)], check=True)
    tensors = load_file(str(ours))
    expected = {
        "dense/kernel": np.arange(12, dtype=np.float32).reshape(3, 4) / 4,
        "dense/bias": np.array([0.5, -1.5], dtype=np.float64),
        "steps": np.array([7, 8, 9], dtype=np.int64),
        "half": np.array([1.5, -2.0], dtype=np.float16),
        "mask": np.array([True, False, True]),
        "bytes": np.array([0, 255], dtype=np.uint8),
    }
    assert set(tensors) == set(expected), f"names: {sorted(tensors)}"
    for name, want in expected.items():
        got = tensors[name]
        assert got.dtype == want.dtype, f"{name}: dtype {got.dtype} != {want.dtype}"
        assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
        assert np.array_equal(got, want), f"{name}: values {got} != {want}"
    theirs = directory / "from_python.safetensors"
    save_file({"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array([3], dtype=np.int32)}, str(theirs),
              metadata={"writer": "python"})
    subprocess.run([program, "--check", str(theirs)], check=True)
    print("safetensors interop: ok")


if __name__ == "__main__":
    main()
