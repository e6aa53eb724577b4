"""What a benchmark ran on: date, CPU model, core count, versions, git revision, host load."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

import torch

from .. import __version__


def environment() -> dict[str, str]:
    """Date, CPU model (``/proc/cpuinfo``), ``os.cpu_count()``, torch / Python / rnnkit versions and
    the git revision of the checkout rnnkit is imported from; read when a run starts, so that it
    names the code that was imported and timed."""
    return {"date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "cpu": _cpu_model(), "cpu_count": str(os.cpu_count()), "torch": torch.__version__,
            "python": platform.python_version(), "rnnkit": f"{__version__}{_git_revision()}"}


def load_average() -> tuple[float, float, float]:
    """The host's 1, 5 and 15-minute load averages (nan where the system has none)."""
    return os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_revision() -> str:
    """``, git abc1234`` (plus `` with uncommitted changes``) when run from a checkout, else empty."""
    root = Path(__file__).resolve().parents[2]
    try:
        revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                  text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    if revision.returncode != 0:
        return ""
    return f", git {revision.stdout.strip()}" + (" with uncommitted changes" if dirty.stdout.strip() else "")
