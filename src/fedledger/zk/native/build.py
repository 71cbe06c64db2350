"""Compile the native Groth16 kernels (g16.cpp) into a shared library with the system g++."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("g16.cpp")
LIB_NAME = "libfedg16.so"
FLAGS = ("-O3", "-march=native", "-shared", "-fPIC", "-std=c++17")


def build(out_dir: Path) -> Path:
    """Build `out_dir/libfedg16.so` from g16.cpp unless it is already newer than the source; return its path.

    The library is compiled to a temporary name and renamed into place, so a concurrent loader never sees a
    half-written file. -march=native ties the result to this machine's CPU: keep out_dir machine-local.
    """
    out_dir = Path(out_dir)
    lib = out_dir / LIB_NAME
    if lib.exists() and lib.stat().st_mtime >= SOURCE.stat().st_mtime:
        return lib
    cxx = shutil.which("g++")
    if cxx is None:
        raise RuntimeError(
            "g++ is not installed: the native Groth16 kernels (fedledger/zk/native/g16.cpp) need a C++17 compiler "
            "(Debian: apt-get install g++)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".libfedg16-", suffix=".so", dir=out_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        proc = subprocess.run([cxx, *FLAGS, "-o", str(tmp), str(SOURCE)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"g++ failed to build {LIB_NAME} (exit {proc.returncode}):\n{proc.stderr.strip()}")
        os.replace(tmp, lib)
    finally:
        tmp.unlink(missing_ok=True)
    return lib
