"""Weights resolution/loading and the model registry (no real checkpoints needed)."""
import hashlib

import numpy as np
import pytest
import torch

from depth_ros.models import create_model, list_models
from depth_ros.models.base import DepthPrediction, focal_to_float, resolve_dtype
from depth_ros.models.weights import (WeightsError, WeightsSpec, download, load_state_dict, load_strict,
                                      resolve_weights)


@pytest.fixture()
def spec(tmp_path):
    return WeightsSpec(filename="tiny.pt", url="https://example.invalid/tiny.pt")


def test_explicit_missing_path_names_the_path(spec, tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_weights(tmp_path / "nope.pt", spec)


def test_offline_error_names_url_and_cache_path(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("DEPTH_ROS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DEPTH_ROS_OFFLINE", "1")
    with pytest.raises(WeightsError) as err:
        resolve_weights(None, spec)
    assert spec.url in str(err.value) and str(tmp_path / "cache" / "tiny.pt") in str(err.value)


def test_cache_is_used(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("DEPTH_ROS_CACHE", str(tmp_path))
    torch.save({"a": torch.zeros(1)}, tmp_path / "tiny.pt")
    assert resolve_weights(None, spec) == tmp_path / "tiny.pt"


def _payload(tmp_path):
    src = tmp_path / "src.pt"
    torch.save({"model": {"w": torch.arange(4.0)}}, src)
    return src, hashlib.sha256(src.read_bytes()).hexdigest()


def test_download_checks_sha256_and_renames_atomically(tmp_path):
    src, digest = _payload(tmp_path)
    dest = tmp_path / "cache" / "x.pt"
    out = download(WeightsSpec("x.pt", src.as_uri(), digest), dest)
    assert out == dest and dest.read_bytes() == src.read_bytes()
    assert not list(dest.parent.glob("*.part"))


def test_download_rejects_wrong_digest_and_leaves_nothing(tmp_path):
    src, _ = _payload(tmp_path)
    dest = tmp_path / "cache" / "x.pt"
    with pytest.raises(WeightsError, match="corrupt"):
        download(WeightsSpec("x.pt", src.as_uri(), "0" * 64), dest)
    assert not dest.exists() and not list(dest.parent.glob("*"))


def test_download_failure_names_url_and_destination(tmp_path):
    dest = tmp_path / "x.pt"
    with pytest.raises(WeightsError) as err:
        download(WeightsSpec("x.pt", (tmp_path / "missing.pt").as_uri()), dest)
    assert "missing.pt" in str(err.value) and str(dest) in str(err.value)


def test_load_state_dict_unwraps_and_strips_module(tmp_path):
    path = tmp_path / "m.pt"
    torch.save({"model": {"module.a": torch.ones(2), "module.b": torch.zeros(1)}}, path)
    sd = load_state_dict(path)
    assert sorted(sd) == ["a", "b"]


def test_load_state_dict_corrupt_file(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsError, match="unreadable or corrupt"):
        load_state_dict(path)


def test_load_state_dict_refuses_arbitrary_pickles(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {"a": torch.ones(1)}, "obj": np.random.default_rng(0)}, path)
    with pytest.raises(WeightsError):
        load_state_dict(path)


def test_load_state_dict_safetensors(tmp_path):
    from safetensors.torch import save_file
    path = tmp_path / "m.safetensors"
    save_file({"x": torch.ones(3)}, str(path))
    assert torch.equal(load_state_dict(path)["x"], torch.ones(3))


def test_load_strict_lists_missing_unexpected_and_shapes():
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    sd = net.state_dict()
    sd["extra.weight"] = torch.zeros(1)
    del sd["1.bias"]
    sd["0.weight"] = torch.zeros(5, 5)
    with pytest.raises(WeightsError) as err:
        load_strict(net, sd, "test.pt")
    msg = str(err.value)
    assert "missing keys [1]: 1.bias" in msg and "unexpected keys [1]: extra.weight" in msg
    assert "0.weight: checkpoint (5, 5) != model (3, 2)" in msg


class ConstantModel:
    def __init__(self, weights=None, device="auto", dtype="float32", depth=2.0):
        self.depth = depth

    def infer(self, rgb, f_px=None):
        return DepthPrediction(depth=np.full(rgb.shape[:2], self.depth, np.float32))


def test_user_class_by_module_path():
    model = create_model(f"{__name__}:ConstantModel", depth=3.5)
    out = model.infer(np.zeros((4, 5, 3), np.uint8))
    assert out.depth.shape == (4, 5) and float(out.depth[0, 0]) == 3.5


@pytest.mark.parametrize("name,fragment", [("no_such_model", "unknown model"),
                                           ("depth_ros.nope:X", "cannot import"),
                                           (f"{__name__}:Missing", "has no attribute"),
                                           (":X", "package.module:ClassName")])
def test_bad_model_names(name, fragment):
    with pytest.raises(ValueError, match=fragment):
        create_model(name)


def test_builtin_models_registered():
    names = list_models()
    for n in ("zoedepth_n", "zoedepth_k", "zoedepth_nk", "depth_pro"):
        assert n in names


@pytest.mark.parametrize("value", [500.0, 500, np.float32(500), np.array(500.0), torch.tensor(500.0),
                                   torch.tensor([500.0])])
def test_focal_to_float_accepts_scalars(value):
    assert focal_to_float(value) == 500.0


@pytest.mark.parametrize("value", [0.0, -3.0, float("nan"), np.array([1.0, 2.0])])
def test_focal_to_float_rejects_bad(value):
    with pytest.raises(ValueError):
        focal_to_float(value)


def test_resolve_dtype():
    assert resolve_dtype("bf16") is torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int8")


def test_weights_dir_is_searched_before_cache(spec, tmp_path, monkeypatch):
    (tmp_path / "wd").mkdir()
    (tmp_path / "cache").mkdir()
    torch.save({"a": torch.zeros(1)}, tmp_path / "wd" / "tiny.pt")
    torch.save({"a": torch.zeros(1)}, tmp_path / "cache" / "tiny.pt")
    monkeypatch.setenv("DEPTH_ROS_WEIGHTS_DIR", str(tmp_path / "wd"))
    monkeypatch.setenv("DEPTH_ROS_CACHE", str(tmp_path / "cache"))
    assert resolve_weights(None, spec) == tmp_path / "wd" / "tiny.pt"


class _TruncatedResponse:
    """An HTTP response whose body ends before its Content-Length (a dropped connection: http.client's
    read() then just returns b"" instead of raising)."""

    def __init__(self, body: bytes, length: int):
        self.headers = {"Content-Length": str(length)}
        self._body = body

    def read(self, n=-1):
        out, self._body = self._body[:n], self._body[n:]
        return out

    def close(self):
        pass


def test_truncated_download_is_rejected_and_leaves_nothing(tmp_path, monkeypatch):
    import depth_ros.models.weights as W
    src, _ = _payload(tmp_path)
    body = src.read_bytes()
    monkeypatch.setattr(W.urllib.request, "urlopen",
                        lambda url, timeout=None: _TruncatedResponse(body[:-10], len(body)))
    dest = tmp_path / "cache" / "x.pt"
    with pytest.raises(WeightsError) as err:
        download(WeightsSpec("x.pt", "https://example.invalid/x.pt"), dest)   # no digest known
    assert "incomplete" in str(err.value) and "https://example.invalid/x.pt" in str(err.value)
    assert not dest.exists() and not list(dest.parent.glob("*"))
    # a complete body of the announced length is accepted
    monkeypatch.setattr(W.urllib.request, "urlopen", lambda url, timeout=None: _TruncatedResponse(body, len(body)))
    assert download(WeightsSpec("x.pt", "https://example.invalid/x.pt"), dest).read_bytes() == body
