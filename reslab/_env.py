"""Environment switches shared by the data layer and the model zoo, and the torch versions needed."""

from __future__ import annotations

import contextlib
import os
import re
from typing import Iterator, Mapping

DOWNLOAD_ENV = "RESLAB_DOWNLOAD"

#: ``torch.compile`` modes: ``reduce-overhead`` adds CUDA graphs (for launch-bound small models);
#: ``auto`` is the entry point's ``$RESLAB_COMPILE`` on CUDA (default ``off``) and ``off`` on the CPU.
COMPILE_MODES = ("off", "auto", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
COMPILE_ENV = "RESLAB_COMPILE"


def compile_setting(environ: Mapping[str, str] | None = None) -> str:
    """The ``torch.compile`` mode a training config's ``compile='auto'`` uses on CUDA:
    ``$RESLAB_COMPILE`` (default ``off``). Read where a command or notebook starts, which puts it
    into the runs' configs (``TrainConfig.cuda_compile``); training reads no environment.

    Raises:
        ValueError: when the variable is not one of :data:`COMPILE_MODES` (``auto`` excepted).
    """
    mode = (os.environ if environ is None else environ).get(COMPILE_ENV, "off").strip() or "off"
    if mode not in COMPILE_MODES or mode == "auto":
        raise ValueError(f"${COMPILE_ENV}={mode!r}; use one of {[m for m in COMPILE_MODES if m != 'auto']}.")
    return mode


def download_allowed(download: bool | None = None) -> bool:
    """Whether data sets and weights may be downloaded.

    Args:
        download: An explicit answer; ``None`` reads ``$RESLAB_DOWNLOAD`` (``0``, ``false``, ``no``
            or ``off`` forbid downloads; default allowed).
    """
    if download is not None:
        return bool(download)
    return os.environ.get(DOWNLOAD_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


#: The oldest releases reslab runs on (pyproject.toml and environment.yml say the same): GPU images
#: often carry an older torch than a workstation, so nothing newer than these is used.
MIN_TORCH, MIN_TORCHVISION = (2, 4), (0, 19)


def _release(version: str) -> tuple[int, int]:
    """``(major, minor)`` of a version string such as ``2.4.1+cu121`` (``(0, 0)`` if unreadable)."""
    m = re.match(r"(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def require_torch(torch_version: str | None = None, torchvision_version: str | None = None) -> None:
    """Check that torch and torchvision are recent enough for reslab (versions default to the installed).

    Raises:
        ImportError: naming the versions found, the versions needed and how to upgrade.
    """
    if torch_version is None or torchvision_version is None:
        import torch
        import torchvision

        torch_version = torch_version or torch.__version__
        torchvision_version = torchvision_version or torchvision.__version__
    if _release(torch_version) < MIN_TORCH or _release(torchvision_version) < MIN_TORCHVISION:
        need = f"torch>={MIN_TORCH[0]}.{MIN_TORCH[1]}", f"torchvision>={MIN_TORCHVISION[0]}.{MIN_TORCHVISION[1]}"
        raise ImportError(
            f"reslab needs {need[0]} and {need[1]}; this Python has torch {torch_version} and torchvision "
            f"{torchvision_version}. Upgrade them together, e.g. pip install '{need[0]}' '{need[1]}' (on a GPU "
            "machine, the build that matches its CUDA driver)."
        )


@contextlib.contextmanager
def environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set environment variables for the block (``None`` unsets one), then put back what was there.

    Only for what a child process must inherit (a notebook's kernel, a job): code in this process
    takes its paths and settings as arguments.
    """
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = str(v)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
