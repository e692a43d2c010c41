"""Finding, downloading and loading checkpoint files.

Resolution order for ``resolve_weights``: an explicit path -> ``$DEPTH_ROS_WEIGHTS_DIR`` (a folder of
checkpoints you manage) -> the local cache (``$DEPTH_ROS_CACHE`` or ``~/.cache/depth_ros``) -> a download from the official URL when allowed
(``allow_download=True`` and ``DEPTH_ROS_OFFLINE`` unset). A download goes to a temporary file with a
progress bar, is checked against the announced length and a recorded sha256 where one is known, and is renamed into place
atomically. Every failure raises ``WeightsError`` with one message that says what to do.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch


class WeightsError(RuntimeError):
    """A checkpoint is missing, unreadable or does not match the network."""


@dataclass(frozen=True)
class WeightsSpec:
    filename: str
    url: str
    sha256: Optional[str] = None


def cache_dir() -> Path:
    return Path(os.environ.get("DEPTH_ROS_CACHE") or Path.home() / ".cache" / "depth_ros")


def downloads_allowed(allow_download: bool = True) -> bool:
    return allow_download and os.environ.get("DEPTH_ROS_OFFLINE", "0") not in ("1", "true", "yes")


def resolve_weights(weights: Union[None, str, Path], spec: WeightsSpec, allow_download: bool = True) -> Path:
    """Return an existing checkpoint path for ``weights`` (see module docstring)."""
    if weights is not None and str(weights) != "":
        path = Path(os.path.expanduser(str(weights)))
        if not path.is_file():
            raise WeightsError(f"weights file '{path}' does not exist (expected {spec.filename}, from {spec.url})")
        return path
    weights_dir = os.environ.get("DEPTH_ROS_WEIGHTS_DIR")
    if weights_dir and (Path(weights_dir) / spec.filename).is_file():
        return Path(weights_dir) / spec.filename
    cached = cache_dir() / spec.filename
    if cached.is_file():
        return cached
    if not downloads_allowed(allow_download):
        raise WeightsError(
            f"weights '{spec.filename}' not found and downloads are off: download {spec.url} and put it at "
            f"{cached} (or pass its path as weights)")
    return download(spec, cached)


def download(spec: WeightsSpec, dest: Path, timeout: float = 30.0) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=str(dest.parent))
    tmp = Path(tmp_name)
    try:
        try:
            resp = urllib.request.urlopen(spec.url, timeout=timeout)  # noqa: S310 (fixed official URL)
        except Exception as exc:  # network down, DNS, HTTP error
            raise WeightsError(
                f"cannot download {spec.url} ({exc}); download it by hand and put it at {dest} "
                f"(or pass its path as weights)") from None
        total = int(resp.headers.get("Content-Length") or 0) or None
        h = hashlib.sha256()
        size = 0
        try:
            from tqdm import tqdm
            bar = tqdm(total=total, unit="B", unit_scale=True, desc=spec.filename)
        except ImportError:  # pragma: no cover
            bar = None
        try:
            with os.fdopen(fd, "wb") as out:
                fd = -1
                while True:
                    block = resp.read(1 << 20)
                    if not block:
                        break
                    out.write(block)
                    h.update(block)
                    size += len(block)
                    if bar is not None:
                        bar.update(len(block))
        finally:
            if bar is not None:
                bar.close()
            close = getattr(resp, "close", None)
            if callable(close):
                close()
        # http.client returns b"" (no error) when a connection drops early: compare with Content-Length,
        # or a truncated file would be renamed into the cache (no digest is known for most files).
        if total is not None and size != total:
            raise WeightsError(f"download of {spec.url} is incomplete ({size} of {total} bytes); try again, or "
                               f"download it by hand and put it at {dest}")
        if spec.sha256 and h.hexdigest() != spec.sha256:
            raise WeightsError(f"download of {spec.url} is corrupt: sha256 {h.hexdigest()} != {spec.sha256}")
        os.replace(tmp, dest)
        return dest
    finally:
        if fd not in (-1, None):
            os.close(fd)
        if tmp.exists():
            tmp.unlink()


def load_state_dict(path: Union[str, Path]) -> dict:
    """Load a checkpoint as a flat ``{name: tensor}`` dict.

    ``.safetensors`` files go through safetensors; anything else through
    ``torch.load(..., weights_only=True)``. A ``{'model': state_dict}`` wrapper (ZoeDepth) is unwrapped
    and a ``module.`` prefix (DataParallel) stripped.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            sd = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"weights file '{path}' is unreadable or corrupt: {type(exc).__name__}: {exc}") from None
    if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]
    elif isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd:
        raise WeightsError(f"weights file '{path}' holds no state_dict (found {type(sd).__name__})")
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"weights file '{path}' has non-tensor entries: {', '.join(map(str, bad[:5]))}")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def load_strict(net: torch.nn.Module, state_dict: dict, source: str = "checkpoint", assign: bool = False) -> None:
    """``load_state_dict(strict=True)`` with a readable error listing missing/unexpected/mis-shaped keys.

    ``assign=True`` adopts the checkpoint tensors instead of copying them (for a network built on the
    meta device: no random initialisation, no second copy in memory).
    """
    own = net.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state_dict[k].shape)} != model {tuple(own[k].shape)}"
              for k in own if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        def cut(items):
            return ", ".join(items[:10]) + (f" (+{len(items) - 10} more)" if len(items) > 10 else "")
        parts = []
        if missing:
            parts.append(f"missing keys [{len(missing)}]: {cut(missing)}")
        if unexpected:
            parts.append(f"unexpected keys [{len(unexpected)}]: {cut(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches [{len(shapes)}]: {cut(shapes)}")
        raise WeightsError(f"{source} does not match the network: " + "; ".join(parts))
    net.load_state_dict(state_dict, strict=True, assign=assign)
