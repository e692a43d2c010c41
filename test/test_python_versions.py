"""The code must run on Python 3.10 (ROS 2 Humble) through 3.12 (Jazzy, Kilted)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _vermin():
    exe = Path(sys.executable).with_name("vermin")
    return str(exe) if exe.exists() else None


@pytest.mark.skipif(_vermin() is None, reason="vermin not installed")
def test_no_feature_newer_than_python_3_10():
    targets = [str(ROOT / p) for p in ("depth_ros", "launch", "bench", "scripts", "test", "setup.py")
               if (ROOT / p).exists()]
    proc = subprocess.run([_vermin(), "-q", "--no-tips", "-t=3.10-", "--eval-annotations", "--violations",
                           *targets], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr
