"""Checkpoints whose pickle would run code are refused, and the code never runs (issue 10, item 12).

Every payload below would create a marker file when unpickled; each test loads it the way users do
(``load_state_dict``, ``create_model(..., weights=PATH)`` for ZoeDepth and Depth Pro (the focal
estimator is a Depth Pro model), the cache folder and ``$DEPTH_ROS_WEIGHTS_DIR``) and checks both the
one-line refusal and that the marker does not exist. ``test_payloads_are_live`` proves the payloads do
run code when loaded unsafely, so these tests can fail.
"""
import io
import os
import pickle
import shlex
import zipfile

import pytest
import torch

from depth_ros.models import create_model
from depth_ros.models.depth_pro import DEPTH_PRO_WEIGHTS
from depth_ros.models.weights import WeightsError, WeightsSpec, download, load_state_dict
from depth_ros.models.zoedepth import WEIGHTS as ZOE_WEIGHTS


class _System:
    """Unpickles as ``os.system("touch MARKER")``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, ("touch " + shlex.quote(self.marker),))


class _Exec:
    """Unpickles as ``exec("open(MARKER, 'w').close()")``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def _torch_bytes(obj, legacy=False):
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def _zip_with_evil_data_pkl(marker):
    """A real torch zip checkpoint whose data.pkl was swapped for a code-running pickle."""
    good = _torch_bytes({"model": {"w": torch.ones(4)}})
    src = zipfile.ZipFile(io.BytesIO(good))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/data.pkl"):
                data = pickle.dumps(_System(marker), protocol=2)
            dst.writestr(info, data)
    return out.getvalue()


PAYLOADS = {
    "raw_pickle_p2": lambda m: pickle.dumps(_System(m), protocol=2),
    "raw_pickle_p4": lambda m: pickle.dumps({"model": {"w": _System(m)}}, protocol=4),
    "text_pickle_p0": lambda m: pickle.dumps(_System(m), protocol=0),
    "exec_pickle": lambda m: pickle.dumps(_Exec(m), protocol=2),
    "torch_zip": lambda m: _torch_bytes({"model": {"w": torch.ones(2)}, "x": _System(m)}),
    "torch_legacy": lambda m: _torch_bytes({"model": {"w": torch.ones(2)}, "x": _System(m)}, legacy=True),
    "torch_zip_swapped_data_pkl": _zip_with_evil_data_pkl,
}
CALLS = {"exec_pickle": "builtins.exec"}


def _write(path, kind, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PAYLOADS[kind](marker))
    return path


def _check_refused(err, path, kind, marker):
    msg = str(err.value)
    assert str(path) in msg and "\n" not in msg and "weights_only" not in msg, msg
    assert f"refused: the pickle would import and call {CALLS.get(kind, 'posix.system')}" in msg \
        or (os.name != "posix" and "refused: the pickle would import and call" in msg), msg
    assert not os.path.exists(marker), "the payload ran"


@pytest.mark.parametrize("kind", ["raw_pickle_p2", "torch_zip"])
def test_payloads_are_live(tmp_path, kind):
    """Control: loaded unsafely, the payloads do run (so the refusals below are meaningful)."""
    marker = tmp_path / "ran"
    path = _write(tmp_path / "evil.pt", kind, marker)
    if kind == "raw_pickle_p2":
        pickle.loads(path.read_bytes())  # noqa: S301 - deliberately unsafe control
    else:
        torch.load(path, weights_only=False)  # noqa: S614 - deliberately unsafe control
    assert marker.exists()


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_load_state_dict_refuses(tmp_path, kind):
    marker = tmp_path / "ran"
    path = _write(tmp_path / "evil.pt", kind, marker)
    with pytest.raises(WeightsError) as err:
        load_state_dict(path)
    _check_refused(err, path, kind, marker)


@pytest.mark.parametrize("kind", ["raw_pickle_p2", "exec_pickle", "torch_zip", "torch_legacy",
                                  "torch_zip_swapped_data_pkl"])
@pytest.mark.parametrize("name, cfg", [("zoedepth_nk", {"backbone": "test_tiny"}),
                                       ("depth_pro", {"vit_preset": "test_tiny"})])
def test_create_model_with_weights_path_refuses(tmp_path, kind, name, cfg):
    marker = tmp_path / "ran"
    path = _write(tmp_path / "evil.pt", kind, marker)
    with pytest.raises(WeightsError) as err:
        create_model(name, weights=str(path), device="cpu", **cfg)
    _check_refused(err, path, kind, marker)


@pytest.fixture()
def offline_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("DEPTH_ROS_CACHE", str(cache))
    monkeypatch.setenv("DEPTH_ROS_OFFLINE", "1")
    monkeypatch.delenv("DEPTH_ROS_WEIGHTS_DIR", raising=False)
    return cache


@pytest.mark.parametrize("kind", ["torch_zip", "raw_pickle_p4"])
@pytest.mark.parametrize("name, filename, cfg", [
    ("zoedepth_nk", ZOE_WEIGHTS["nk"].filename, {}),   # the released backbone: refused before any network is built
    ("depth_pro", DEPTH_PRO_WEIGHTS.filename, {"vit_preset": "test_tiny"}),
])
def test_cache_folder_file_is_refused(offline_cache, tmp_path, kind, name, filename, cfg):
    marker = tmp_path / "ran"
    path = _write(offline_cache / filename, kind, marker)
    with pytest.raises(WeightsError) as err:
        create_model(name, device="cpu", **cfg)
    _check_refused(err, path, kind, marker)


def test_weights_dir_file_is_refused(offline_cache, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    wdir = tmp_path / "wd"
    path = _write(wdir / DEPTH_PRO_WEIGHTS.filename, "torch_zip", marker)
    monkeypatch.setenv("DEPTH_ROS_WEIGHTS_DIR", str(wdir))
    with pytest.raises(WeightsError) as err:
        create_model("depth_pro", device="cpu", vit_preset="test_tiny")
    _check_refused(err, path, "torch_zip", marker)


def test_downloaded_payload_is_refused_and_stays_in_the_cache(tmp_path, offline_cache):
    """A download whose digest matches but which holds a payload (a compromised mirror with an updated
    digest) is still refused at load; the download writes only its destination in the cache."""
    import hashlib
    marker = tmp_path / "ran"
    src = _write(tmp_path / "mirror" / "evil.pt", "torch_zip", marker)
    before = {p for p in tmp_path.rglob("*")}
    dest = offline_cache / "evil.pt"
    download(WeightsSpec("evil.pt", src.as_uri(), hashlib.sha256(src.read_bytes()).hexdigest()), dest)
    assert {p for p in tmp_path.rglob("*")} - before == {offline_cache, dest}
    with pytest.raises(WeightsError) as err:
        load_state_dict(dest)
    _check_refused(err, dest, "torch_zip", marker)
