"""Weights resolution/loading and the model registry (no real checkpoints needed)."""
import hashlib
import re

import numpy as np
import pytest
import torch

from depth_ros.models import create_model, list_models
from depth_ros.models.base import DepthPrediction, focal_to_float, resolve_dtype
from depth_ros.models.weights import WeightsError, WeightsSpec, download, load_state_dict, load_strict, resolve_weights


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
    with pytest.raises(WeightsError, match="not a PyTorch checkpoint"):
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


# ------------------------------------------- one clear line for every broken checkpoint (issue 10, defect 5)

def _good_bytes(legacy=False):
    import io
    buf = io.BytesIO()
    torch.save({"model": {"w": torch.arange(600.0)}}, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def _check_one_line(err, path, fragment):
    msg = str(err.value)
    assert msg.startswith(f"weights file '{path}'"), msg
    assert fragment in msg, msg
    assert "\n" not in msg and "weights_only" not in msg and "file an issue" not in msg.lower(), msg


@pytest.mark.parametrize("name, make, fragment", [
    ("empty", lambda: b"", "empty file (0 bytes)"),
    ("random", lambda: np.random.default_rng(1).bytes(4096), "not a PyTorch checkpoint (neither a zip archive"),
    ("text", lambda: b"<html>404 Not Found</html>", "not a PyTorch checkpoint"),
    ("truncated_zip", lambda: _good_bytes()[:1500], "truncated file"),
    ("zip_without_tail", lambda: _good_bytes()[:-40], "truncated file"),
    ("truncated_legacy", lambda: _good_bytes(legacy=True)[:70], "truncated file"),
    ("truncated_legacy_data", lambda: _good_bytes(legacy=True)[:-100], "truncated file"),
    ("plain_pickle", lambda: __import__("pickle").dumps({"w": [1.0, 2.0]}), "not a PyTorch checkpoint"),
])
def test_broken_checkpoints_give_one_clear_line(tmp_path, name, make, fragment):
    path = tmp_path / f"{name}.pt"
    path.write_bytes(make())
    with pytest.raises(WeightsError) as err:
        load_state_dict(path)
    _check_one_line(err, path, fragment)


def test_legacy_format_checkpoint_still_loads(tmp_path):
    path = tmp_path / "legacy.pt"
    path.write_bytes(_good_bytes(legacy=True))
    assert torch.equal(load_state_dict(path)["w"], torch.arange(600.0))


def test_foreign_pickle_global_is_named(tmp_path):
    # a numpy Generator: harmless, but not a tensor; the refusal names what the pickle would import
    path = tmp_path / "np.pt"
    torch.save({"model": {"a": torch.ones(1)}, "obj": np.random.default_rng(0)}, path)
    with pytest.raises(WeightsError) as err:
        load_state_dict(path)
    _check_one_line(err, path, "refused: the pickle would import and call numpy.")


def test_non_tensor_and_non_dict_contents(tmp_path):
    for obj, fragment in (([torch.ones(1)], "it holds a list"), ({}, "it holds an empty dict"),
                          ({"a": 3, "b": torch.ones(1)}, "1 non-tensor entries, e.g. 'a'")):
        path = tmp_path / "x.pt"
        torch.save(obj, path)
        with pytest.raises(WeightsError) as err:
            load_state_dict(path)
        _check_one_line(err, path, fragment)


@pytest.mark.parametrize("name, make, fragment", [
    ("empty", lambda: b"", "empty file"),
    ("random", lambda: np.random.default_rng(2).bytes(100), "not a safetensors file"),
    ("truncated", None, "truncated file"),
])
def test_broken_safetensors(tmp_path, name, make, fragment):
    from safetensors.torch import save_file
    path = tmp_path / f"{name}.safetensors"
    if make is None:
        save_file({"x": torch.ones(100)}, str(path))
        path.write_bytes(path.read_bytes()[:-40])
    else:
        path.write_bytes(make())
    with pytest.raises(WeightsError) as err:
        load_state_dict(path)
    _check_one_line(err, path, fragment)


def test_safetensors_content_under_another_name(tmp_path):
    from safetensors.torch import save_file
    path = tmp_path / "model.bin"
    save_file({"x": torch.ones(3)}, str(path))
    assert torch.equal(load_state_dict(path)["x"], torch.ones(3))


def test_unreadable_path(tmp_path):
    with pytest.raises(WeightsError, match="cannot be read"):
        load_state_dict(tmp_path)          # a folder


def test_wrong_models_checkpoint_is_one_line_with_counts(tmp_path):
    """A Depth Pro checkpoint given to ZoeDepth (and the reverse): counts and examples of the missing and
    unexpected keys, one line, never a partial load."""
    pro = create_model("depth_pro", weights="random", device="cpu", vit_preset="test_tiny")
    zoe = create_model("zoedepth_nk", weights="random", device="cpu", backbone="test_tiny")
    pro_path, zoe_path = tmp_path / "pro.pt", tmp_path / "zoe.pt"
    torch.save(pro.net.state_dict(), pro_path)
    torch.save({"model": zoe.net.state_dict()}, zoe_path)
    for name, path, cfg in (("zoedepth_nk", pro_path, {"backbone": "test_tiny"}),
                            ("depth_pro", zoe_path, {"vit_preset": "test_tiny"})):
        with pytest.raises(WeightsError) as err:
            create_model(name, weights=path, device="cpu", **cfg)
        msg = str(err.value)
        assert str(path) in msg and "\n" not in msg, msg
        assert "no key in common: a checkpoint of another model?" in msg, msg
        assert re.search(r"missing keys \[\d+\]: \S+", msg) and re.search(r"unexpected keys \[\d+\]: \S+", msg), msg
        assert msg.count(", ") < 40, msg   # examples, not the whole list
