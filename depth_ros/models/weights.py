"""Finding, downloading and loading checkpoint files.

Resolution order for ``resolve_weights``: an explicit path -> ``$DEPTH_ROS_WEIGHTS_DIR`` (a folder of
checkpoints you manage) -> the local cache (``$DEPTH_ROS_CACHE`` or ``~/.cache/depth_ros``) -> a download from
the official URL when allowed (``allow_download=True`` and ``DEPTH_ROS_OFFLINE`` unset). A download goes to a temporary file with a
progress bar, is checked against the announced length and a recorded sha256 where one is known, and is renamed into place
atomically. Every failure raises ``WeightsError`` with one message that says what to do.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickletools
import re
import tempfile
import urllib.request
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple, Union

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


#: what a zip-format checkpoint starts with / the first pickle of torch's legacy (pre-1.6) format
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
#: opcodes that call what a GLOBAL imported
_CALL_OPS = frozenset({"REDUCE", "NEWOBJ", "NEWOBJ_EX", "INST", "OBJ", "BUILD"})
_MAX_SCAN = 64 << 20  # bytes of a pickle examined for the diagnosis
#: Python 2 module names that protocol <= 2 pickles use (what pickle maps them to on load)
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


def _allowed_globals() -> set:
    """``module.name`` of every global that ``torch.load(weights_only=True)`` accepts."""
    names = set()
    try:  # torch's own allowlist (private, so guarded) plus the user's add_safe_globals
        from torch import _weights_only_unpickler as wou
        names.update(wou._get_allowed_globals())
        for g in torch.serialization.get_safe_globals():
            g = g[0] if isinstance(g, tuple) else g
            names.add(f"{getattr(g, '__module__', '')}.{getattr(g, '__qualname__', getattr(g, '__name__', ''))}")
    except Exception:  # pragma: no cover - API drift: fall back to the checkpoint basics
        names.update({"collections.OrderedDict", "torch._utils._rebuild_tensor_v2",
                      "torch._utils._rebuild_parameter"})
    return names


def _scan_pickles(data: bytes, max_pickles: int) -> Tuple[List[str], bool, Optional[str], int, list]:
    """Walk up to ``max_pickles`` consecutive pickles in ``data`` without executing anything.

    Returns ``(globals, calls, error, complete, first_args)``: the ``module.name`` of every GLOBAL /
    STACK_GLOBAL, whether any opcode would call one, the parse error (None if clean), how many
    pickles parsed completely and the first pickle's first opcodes (to recognise torch's legacy magic
    number). ``error`` ends with " (end of data)" when the data stops inside a pickle.
    """
    stream = io.BytesIO(data)  # BytesIO.read(n) never allocates a length the file claims
    found: List[str] = []
    calls = False
    first_args: list = []
    complete = 0
    while complete < max_pickles and stream.tell() < len(data):
        strings: List[str] = []
        try:
            for op, arg, _pos in pickletools.genops(stream):
                if complete == 0 and len(first_args) < 4:
                    first_args.append((op.name, arg))
                if op.name == "GLOBAL":
                    module, _, name = str(arg).partition(" ")
                    found.append(f"{_PY2_MODULES.get(module, module)}.{name}")
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{_PY2_MODULES.get(strings[-2], strings[-2])}.{strings[-1]}")
                elif op.name in _CALL_OPS:
                    calls = True
                if isinstance(arg, str):
                    strings.append(arg)
        except Exception as exc:  # ValueError for bad opcodes/truncation, others for odd arguments
            text = str(exc)
            if stream.tell() >= len(data) and ("exhausted" in text or "remain" in text or "not enough" in text):
                text += " (end of data)"
            return found, calls, text, complete, first_args
        complete += 1
    return found, calls, None, complete, first_args


def _clean_torch_reason(exc: BaseException) -> str:
    """A short, one-line reason from a torch.load failure, without torch's advice to use
    ``weights_only=False`` (never a safe fix for a file one did not write) or to file issues."""
    keep = []
    for part in re.split(r"(?<=[.!?])\s+|\n+", str(exc)):
        low = part.lower()
        if not part.strip() or "weights_only" in low or "file an issue" in low or "documentation" in low \
                or "pytorch 2.6" in low or "trusted source" in low:
            continue
        keep.append(part.strip())
    text = " ".join(keep)[:200] or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def _diagnose_pickle_failure(path: Path, exc: BaseException) -> str:
    """What is wrong with a file ``torch.load(weights_only=True)`` refused, in a few words."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:4] in _ZIP_MAGIC:
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError):
            return f"truncated file ({size} bytes: a zip archive without its end record; the download or copy " \
                   "did not finish)"
        with zf:
            pkls = [n for n in zf.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            if not pkls:
                return "not a PyTorch checkpoint (a zip archive without data.pkl)"
            try:
                with zf.open(pkls[0]) as member:
                    data = member.read(_MAX_SCAN)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError, zlib.error) as zexc:
                return f"damaged zip archive ({pkls[0]}: {zexc})"
        found, calls, error, _complete, _ = _scan_pickles(data, 1)
    else:
        with open(path, "rb") as fh:
            data = fh.read(_MAX_SCAN)
        # legacy format: magic number, protocol, sys_info, the object, its storage keys; then raw bytes
        found, calls, error, complete, first_args = _scan_pickles(data, 5)
        legacy = any(a == _LEGACY_MAGIC for _op, a in first_args)
        if not found and error is not None:
            if head[:1] == b"\x80" and size <= _MAX_SCAN and error.endswith("(end of data)"):
                return f"truncated file ({size} bytes: the pickle ends before its STOP opcode)"
            if complete == 0:
                return f"not a PyTorch checkpoint (neither a zip archive nor a pickle; starts with {head.hex(' ')})"
    allowed = _allowed_globals()
    unsafe = sorted({g for g in found if g not in allowed})
    if unsafe:
        shown = ", ".join(unsafe[:3]) + (f" (+{len(unsafe) - 3} more)" if len(unsafe) > 3 else "")
        verb = "import and call" if calls else "import"
        return f"refused: the pickle would {verb} {shown} (unsafe: a checkpoint holds only tensors)"
    if head[:4] not in _ZIP_MAGIC and not legacy:
        return "not a PyTorch checkpoint (a pickle not written by torch.save)"
    if head[:4] not in _ZIP_MAGIC and complete < 5 and error is None:
        return f"truncated file ({size} bytes: a legacy torch.save file that ends after {complete} of its 5 pickles)"
    if head[:4] not in _ZIP_MAGIC and "unexpected eof" in str(exc).lower():
        return f"truncated file ({size} bytes: a legacy torch.save file whose tensor data ends early)"
    if error is not None:
        return f"damaged PyTorch checkpoint (its pickle does not parse: {error[:120]})"
    return f"unreadable PyTorch checkpoint ({_clean_torch_reason(exc)})"


def _looks_like_safetensors(head: bytes) -> bool:
    return len(head) >= 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < (100 << 20)


def _load_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file
    try:
        return load_file(str(path))
    except Exception as exc:  # SafetensorError (a Rust exception type) and OSError
        lines = str(exc).replace("Error while deserializing header: ", "").strip().splitlines()
        msg = lines[0] if lines else type(exc).__name__
        with open(path, "rb") as fh:
            head = fh.read(9)
        if _looks_like_safetensors(head) and ("incomplete" in msg or "not fully covered" in msg
                                              or "invalid header length" in msg):
            reason = f"truncated file ({path.stat().st_size} bytes: safetensors {msg})"
        else:
            reason = f"not a safetensors file ({msg})"
    raise WeightsError(f"weights file '{path}': {reason}")


def load_state_dict(path: Union[str, Path]) -> dict:
    """Load a checkpoint as a flat ``{name: tensor}`` dict.

    ``.safetensors`` files (by name, or by content for another name) go through safetensors; anything
    else through ``torch.load(..., weights_only=True)``, which never runs code from the file. A
    ``{'model': state_dict}`` wrapper (ZoeDepth) is unwrapped and a ``module.`` prefix (DataParallel)
    stripped.

    Every failure is one ``WeightsError`` line naming the file and what is wrong: ``empty file``,
    ``truncated file``, ``not a PyTorch checkpoint``, ``refused: the pickle would import and call X
    (unsafe)`` (found by walking the pickle's opcodes, nothing executed), ``damaged ...``. Torch's own
    text, which suggests ``weights_only=False``, is never passed on.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise WeightsError(f"weights file '{path}' cannot be read: {exc.strerror or exc}") from None
    if size == 0:
        raise WeightsError(f"weights file '{path}': empty file (0 bytes); download it again")
    if path.suffix == ".safetensors" or (head[:4] not in _ZIP_MAGIC and _looks_like_safetensors(head)):
        sd = _load_safetensors(path)
    else:
        try:
            with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4" for a file we refuse anyway
                warnings.simplefilter("ignore")
                sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            try:
                reason = _diagnose_pickle_failure(path, exc)
            except Exception as dexc:  # pragma: no cover - the diagnosis must never hide the failure
                reason = f"unreadable ({_clean_torch_reason(exc)}; {type(dexc).__name__} while diagnosing)"
            raise WeightsError(f"weights file '{path}': {reason}") from None
    if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]
    elif isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd:
        what = "an empty dict" if isinstance(sd, dict) else f"a {type(sd).__name__}"
        raise WeightsError(f"weights file '{path}': not a PyTorch checkpoint (it holds {what}, not a state_dict)")
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"weights file '{path}': not a state_dict ({len(bad)} non-tensor entries, e.g. "
                           f"{', '.join(repr(str(k))[:60] for k in bad[:3])})")
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
        def cut(items, n=5):
            return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")
        parts = []
        if own and len(missing) == len(own):
            parts.append("no key in common: a checkpoint of another model?")
        if missing:
            parts.append(f"missing keys [{len(missing)}]: {cut(missing)}")
        if unexpected:
            parts.append(f"unexpected keys [{len(unexpected)}]: {cut(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches [{len(shapes)}]: {cut(shapes)}")
        raise WeightsError(f"{source} does not match the network: " + "; ".join(parts))
    net.load_state_dict(state_dict, strict=True, assign=assign)
