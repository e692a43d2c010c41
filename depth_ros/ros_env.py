"""Environment for running several ROS 2 processes on one machine without crosstalk (no rclpy import).

Used by the demo and the tests: a ``ROS_DOMAIN_ID`` that no other run on this machine holds, discovery
limited to this host, and the Fast DDS shared-memory profile (``config/fastdds_shm.xml``) so that
multi-megabyte images and clouds between processes are not lost. Apply it before a process's first
``rclpy.init``: Fast DDS reads its XML profile once.
"""
from __future__ import annotations

import errno
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional

PKG_DIR = Path(__file__).resolve().parent

_domain_lock_file = None
_domain_id: Optional[int] = None


def find_share_file(rel: str) -> Optional[Path]:
    """``config/...``, ``launch/...`` from the source tree (checkout, editable install) or the installed
    ``share/depth_ros`` (colcon / pip data files)."""
    candidates = [PKG_DIR.parent / rel, Path(sys.prefix) / "share" / "depth_ros" / rel]
    try:
        from ament_index_python.packages import get_package_share_directory  # type: ignore
        candidates.append(Path(get_package_share_directory("depth_ros")) / rel)
    except Exception:  # not in a sourced ROS workspace
        pass
    for c in candidates:
        if c.is_file():
            return c
    return None


def allocate_domain_id(lo: int = 1, hi: int = 101) -> int:
    """A ROS_DOMAIN_ID in [lo, hi] (port-safe range) that no other process on this machine holds.

    Held with an flock'ed file under ``$TMPDIR/depth_ros_domain_locks`` until this process exits; the
    same id is returned on later calls in this process.
    """
    global _domain_lock_file, _domain_id
    if _domain_id is not None:
        return _domain_id
    import fcntl

    ids = list(range(lo, hi + 1))
    random.Random(os.getpid() ^ int(time.time() * 1e6)).shuffle(ids)
    lock_dir = Path(tempfile.gettempdir()) / "depth_ros_domain_locks"
    lock_dir.mkdir(exist_ok=True)
    for did in ids:
        f = open(lock_dir / f"{did}.lock", "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            f.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                continue
            raise
        _domain_lock_file, _domain_id = f, did
        return did
    raise RuntimeError(f"no free ROS_DOMAIN_ID in {lo}..{hi}")


def isolation_env(domain_id: Optional[int] = None, shm: bool = True) -> Dict[str, str]:
    """The variables that keep a run's ROS traffic on this host and in its own domain."""
    did = allocate_domain_id() if domain_id is None else domain_id
    env = {"ROS_DOMAIN_ID": str(did), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    if os.environ.get("ROS_DISTRO", "") == "humble":  # Humble predates ROS_AUTOMATIC_DISCOVERY_RANGE
        env["ROS_LOCALHOST_ONLY"] = "1"
    if shm:
        profile = find_share_file("config/fastdds_shm.xml")
        if profile is not None:
            env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    return env
