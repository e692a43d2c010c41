"""ZoeDepth (Bhat et al. 2023): metric-bins heads on the MiDaS v3.1 BEiT DPT network.

Registered models (``create_model(name, weights=None, device="auto", dtype="float32", **config)``):

* ``zoedepth_nk``  ZoeD-M12-NK: two heads (NYU indoor 0-10 m, KITTI outdoor 0-80 m) and a router.
* ``zoedepth_n``   ZoeD-M12-N: one head trained on NYU Depth v2 (indoor).
* ``zoedepth_k``   ZoeD-M12-K: one head trained on KITTI (outdoor). Built with the KITTI range (80 m):
  the official ``infer``/torch.hub path builds ZoeD_K with the default 10 m range and so clips depth
  at 10 m (isl-org/ZoeDepth issues #28 and #139); we use the range the model was trained with.

Same weights and numbers as the official code (isl-org/ZoeDepth, archived), without its problems: it runs
on current timm (no torch.hub, no network at load time), loads checkpoints strictly, routes NK per image
rather than per batch, and exposes a per-pixel confidence.

Config (keyword arguments of ``create_model``):

=================  ==============================================================================
backbone           "beitl16_384" (default, the released models), "beitb16_384" (MiDaS BEiT-B/16-384
                   DPT with the same head; no released weights) or "test_tiny" (tiny random network
                   for tests; 64x96 network input).
domain             "auto" (router, NK), "indoor" or "outdoor" (force a head). Settable at runtime
                   (``model.domain = "outdoor"``).
keep_aspect        True (default, official ``infer`` configuration: resize keeping the aspect ratio,
                   "minimal" rule, sides multiples of 32). False = official ``eval`` configuration:
                   stretch to ``img_size``.
img_size           network size (h, w) for the resize rule: (384, 512) for N/NK, (384, 768) for K.
flip_aug           average with a horizontally flipped pass (2x compute). Default False.
pad_input          reflect-pad the input by int(sqrt(H/2)*3) x int(sqrt(W/2)*3) pixels and crop the
                   output (official boundary fix for NYU-style frames). Default False.
compile            False / True / a torch.compile mode string ("max-autotune", ...).
channels_last      "auto" (on for CUDA), True or False: channels-last memory format for the decoder.
allow_download     fetch the official checkpoint when it is not in the cache (default True).
=================  ==============================================================================

Confidence (``DepthPrediction.confidence``): for each pixel the heads predict a distribution ``p_k`` over
64 depth-bin centres ``c_k`` and the depth is its mean ``d = sum_k p_k c_k``. The confidence is
``1 - s/d`` clipped to [0, 1], with ``s = sqrt(sum_k p_k (c_k - d)^2)`` the predictive standard deviation:
1 = all mass in one bin, 0.9 = the distribution spreads +-10 % of the depth, 0 = spread as large as the
depth itself (a flat distribution over 0-10 m gives about 0.4). It is computed at network resolution
and resized bilinearly with the depth; with ``flip_aug`` the two passes are averaged.
"""
from __future__ import annotations

import contextlib
import math
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from depth_ros.models.base import Capabilities, DepthModel, DepthPrediction, check_rgb, focal_to_float
from depth_ros.models.dpt_beit import BACKBONES, BeitDPT, DPTFeatures, relative_position_index
from depth_ros.models.registry import register_model
from depth_ros.models.weights import WeightsError, WeightsSpec, load_state_dict, load_strict, resolve_weights

_RELEASE = "https://github.com/isl-org/ZoeDepth/releases/download/v1.0/"
WEIGHTS: Dict[str, WeightsSpec] = {
    "nk": WeightsSpec("ZoeD_M12_NK.pt", _RELEASE + "ZoeD_M12_NK.pt"),
    "n": WeightsSpec("ZoeD_M12_N.pt", _RELEASE + "ZoeD_M12_N.pt"),
    "k": WeightsSpec("ZoeD_M12_K.pt", _RELEASE + "ZoeD_M12_K.pt"),
}

# Head names as in the checkpoints, and what we call them.
DOMAINS = {"nyu": "indoor", "kitti": "outdoor"}
_HEAD_OF_DOMAIN = {"indoor": "nyu", "outdoor": "kitti", "nyu": "nyu", "kitti": "kitti"}

# Variant settings (from the official JSON configs; min/max depth matter only for the normed K head).
VARIANTS = {
    "nk": dict(heads=(("nyu", 1e-3, 10.0), ("kitti", 1e-3, 80.0)), bins="softplus", img_size=(384, 512)),
    "n": dict(heads=(("nyu", 1e-3, 10.0),), bins="softplus", img_size=(384, 512)),
    "k": dict(heads=(("kitti", 1e-3, 80.0),), bins="normed", img_size=(384, 768)),
}
N_BINS = 64
BIN_EMBEDDING = 128
MIN_TEMP, MAX_TEMP = 0.0212, 50.0
# The official layers call inv_attractor() without passing alpha/gamma, so the config's alpha=1000 never
# takes effect: the function defaults alpha=300, gamma=2 are what the released models were trained with.
ATTRACTOR_ALPHA, ATTRACTOR_GAMMA = 300.0, 2
ROUTER_WIDTH, ROUTER_HEADS, ROUTER_LAYERS = 128, 4, 4
ROUTER_FF = {"beitl16_384": 1024, "beitb16_384": 1024, "test_tiny": 64}
# "test_tiny" runs at 64x96 so that tests stay fast.
_TINY_IMG_SIZE = (64, 96)


# ---------------------------------------------------------------------------------------------
# Pre-processing
# ---------------------------------------------------------------------------------------------
def network_size(h: int, w: int, img_size: Sequence[int] = (384, 512), keep_aspect: bool = True,
                 multiple: int = 32) -> Tuple[int, int]:
    """Network input size for an h x w image (official ``Resize``: "minimal" rule, multiples of 32).

    keep_aspect: scale both sides by whichever of img_h/h, img_w/w is closer to 1; otherwise stretch to
    img_size. Each side is then rounded (half to even, like numpy) to a multiple of ``multiple``.
    """
    sh, sw = img_size[0] / h, img_size[1] / w
    if keep_aspect:
        if abs(1 - sw) < abs(1 - sh):
            sh = sw
        else:
            sw = sh
    nh = int(round(sh * h / multiple)) * multiple
    nw = int(round(sw * w / multiple)) * multiple
    return max(nh, multiple), max(nw, multiple)


def no_autocast(device_type: str):
    """Autocast off (the float32 heads); a no-op on device types without autocast (``meta``)."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def resize_input(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize a B x 3 x H x W [0, 1] batch to the network size (bilinear, align_corners=True, official)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


class DepthCore(nn.Module):
    """Pre-processing + MiDaS DPT (the official ``MidasCore``; the DPT itself lives in ``.core``)."""

    def __init__(self, backbone: str, img_size: Sequence[int], keep_aspect: bool):
        super().__init__()
        self.core = BeitDPT(backbone)
        self.img_size = tuple(int(v) for v in img_size)
        self.keep_aspect = bool(keep_aspect)
        self.channels_last = False

    def network_size(self, h: int, w: int) -> Tuple[int, int]:
        return network_size(h, w, self.img_size, self.keep_aspect)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB -> resized (bilinear, align_corners=True) and normalised to [-1, 1] (mean = std = 0.5)."""
        x = resize_input(x, self.network_size(x.shape[-2], x.shape[-1]))
        return (x - 0.5) / 0.5

    def forward(self, x: torch.Tensor) -> DPTFeatures:
        x = self.prepare(x.float())
        x = x.to(self.core.pretrained.model.cls_token.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.core(x)


# ---------------------------------------------------------------------------------------------
# Metric head layers (parameter names follow the official checkpoints)
# ---------------------------------------------------------------------------------------------
def _mlp1x1(c_in: int, c_hidden: int, c_out: int, last: Optional[nn.Module]) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_hidden, 1), nn.ReLU(), nn.Conv2d(c_hidden, c_out, 1)]
    if last is not None:
        layers.append(last)
    return nn.Sequential(*layers)


def _up(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


class Projector(nn.Module):
    def __init__(self, c_in: int, c_out: int, c_hidden: int):
        super().__init__()
        self._net = _mlp1x1(c_in, c_hidden, c_out, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._net(x)


class SeedBins(nn.Module):
    """Seed bin centres from the bottleneck.

    softplus: unbounded centres = softplus(MLP(x)). normed: positive widths (ReLU + 1e-3) normalised to sum
    to (max - min), cumulated from min_depth; centres are the mid-points.
    """

    def __init__(self, c_in: int, n_bins: int, c_hidden: int, normed: bool, min_depth: float, max_depth: float):
        super().__init__()
        self.normed = normed
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self._net = _mlp1x1(c_in, c_hidden, n_bins, nn.ReLU() if normed else nn.Softplus())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self._net(x)
        if not self.normed:
            return b
        b = b + 1e-3
        widths = (self.max_depth - self.min_depth) * (b / b.sum(dim=1, keepdim=True))
        widths = F.pad(widths, (0, 0, 0, 0, 1, 0), value=self.min_depth)
        edges = torch.cumsum(widths, dim=1)
        return 0.5 * (edges[:, :-1] + edges[:, 1:])


def inv_attractor(dx: torch.Tensor) -> torch.Tensor:
    """Inverse attractor shift dx / (1 + alpha dx^gamma) with the effective alpha=300, gamma=2."""
    return dx / (1 + ATTRACTOR_ALPHA * dx.pow(ATTRACTOR_GAMMA))


class Attractor(nn.Module):
    """Moves the (upsampled) bin centres towards predicted attractor points; mean of the inverse shifts."""

    def __init__(self, c_emb: int, n_attractors: int, normed: bool, min_depth: float, max_depth: float):
        super().__init__()
        self.n_attractors = n_attractors
        self.normed = normed
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        c_out = 2 * n_attractors if normed else n_attractors
        self._net = _mlp1x1(c_emb, c_emb, c_out, nn.ReLU() if normed else nn.Softplus())

    def forward(self, emb: torch.Tensor, prev_bins: torch.Tensor, prev_emb: torch.Tensor):
        size = emb.shape[-2:]
        a = self._net(emb + _up(prev_emb, size))
        bins = _up(prev_bins, size)
        if self.normed:
            # Official quirk kept: the normalised pair is computed but the raw first channel is used.
            a = (a + 1e-3).view(a.shape[0], self.n_attractors, 2, *size)[:, :, 0]
        delta = torch.zeros_like(bins)
        for i in range(self.n_attractors):
            delta = delta + inv_attractor(a[:, i:i + 1] - bins)
        new_bins = bins + delta / self.n_attractors
        if not self.normed:
            return new_bins, new_bins
        centres = (self.max_depth - self.min_depth) * new_bins + self.min_depth
        centres = torch.sort(centres, dim=1).values.clamp(self.min_depth, self.max_depth)
        return new_bins, centres


def channel_softmax(x: torch.Tensor) -> torch.Tensor:
    """``softmax(x, dim=1)``. In an ONNX export it is written out (max, exp, sum): ONNX Runtime's Softmax
    over the channels of a full-resolution B x 64 x H x W tensor takes 1.1 s at 384 x 512 on a 2-core CPU
    (its optimizer folds a transpose-to-last-axis back into it), the written-out form a few tens of ms."""
    if torch.onnx.is_in_onnx_export():
        e = torch.exp(x - x.amax(dim=1, keepdim=True))
        return e / e.sum(dim=1, keepdim=True)
    return torch.softmax(x, dim=1)


class LogBinomial(nn.Module):
    """Softmax of a temperature-scaled log-binomial over K classes (Stirling log-binomial coefficients)."""

    def __init__(self, n_classes: int):
        super().__init__()
        self.K = n_classes
        self.register_buffer("k_idx", torch.arange(n_classes).view(1, -1, 1, 1))
        self.register_buffer("K_minus_1", torch.tensor([float(n_classes - 1)]).view(1, 1, 1, 1))

    @staticmethod
    def _log_binom(n: torch.Tensor, k: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
        n, k = n + eps, k + eps
        return n * torch.log(n) - k * torch.log(k) - (n - k) * torch.log(n - k + eps)

    def forward(self, p: torch.Tensor, t: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
        k = self.k_idx
        log_q = torch.log(torch.clamp(1 - p, eps, 1))
        log_p = torch.log(torch.clamp(p, eps, 1))
        y = self._log_binom(self.K_minus_1, k) + k * log_p + (self.K - 1 - k) * log_q
        return channel_softmax(y / t)


class ConditionalLogBinomial(nn.Module):
    """Per-pixel MLP -> (p, temperature) -> log-binomial distribution over the bins."""

    def __init__(self, c_in: int, c_cond: int, n_bins: int, bottleneck_factor: int,
                 min_temp: float = MIN_TEMP, max_temp: float = MAX_TEMP, p_eps: float = 1e-4):
        super().__init__()
        hidden = (c_in + c_cond) // bottleneck_factor
        self.mlp = nn.Sequential(nn.Conv2d(c_in + c_cond, hidden, 1), nn.GELU(), nn.Conv2d(hidden, 4, 1),
                                 nn.Softplus())
        self.log_binomial_transform = LogBinomial(n_bins)
        self.min_temp, self.max_temp, self.p_eps = min_temp, max_temp, p_eps

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        pt = self.mlp(torch.cat([x, cond], dim=1)) + self.p_eps
        p = pt[:, 0:1] / (pt[:, 0:1] + pt[:, 1:2])
        t = pt[:, 2:3] / (pt[:, 2:3] + pt[:, 3:4])
        t = (self.max_temp - self.min_temp) * t + self.min_temp
        return self.log_binomial_transform(p, t)


def bin_confidence(probs: torch.Tensor, centres: torch.Tensor, depth: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per-pixel confidence in [0, 1] from a bin distribution (B x K x H x W each): ``1 - s/d`` clipped,
    with d = sum p c the predicted depth and s = sqrt(sum p (c - d)^2) the predictive spread."""
    if depth is None:
        depth = torch.sum(probs * centres, dim=1, keepdim=True)
    spread = torch.sqrt(torch.sum(probs * (centres - depth) ** 2, dim=1, keepdim=True))
    return (1 - spread / depth.clamp_min(1e-6)).clamp(0, 1)


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).view(b, s, 3, self.heads, d // self.heads) \
            .permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).reshape(b, s, d))


class _EncoderLayer(nn.Module):
    """Post-norm transformer layer (ReLU feed-forward), eval-mode equivalent of nn.TransformerEncoderLayer."""

    def __init__(self, dim: int, heads: int, ff: int):
        super().__init__()
        self.self_attn = _SelfAttention(dim, heads)
        self.linear1 = nn.Linear(dim, ff)
        self.linear2 = nn.Linear(ff, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.self_attn(x))
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


class PatchTransformer(nn.Module):
    """Router encoder: 1x1 patch embedding, a zero "class" token in front, sin/cos positions, 4 layers."""

    def __init__(self, c_in: int, dim: int = ROUTER_WIDTH, heads: int = ROUTER_HEADS, ff: int = 1024,
                 layers: int = ROUTER_LAYERS):
        super().__init__()
        self.embedding_convPxP = nn.Conv2d(c_in, dim, 1)
        self.transformer_encoder = nn.Module()
        self.transformer_encoder.layers = nn.ModuleList([_EncoderLayer(dim, heads, ff) for _ in range(layers)])

    @staticmethod
    def positions(n: int, dim: int, device) -> torch.Tensor:
        pos = torch.arange(n, dtype=torch.float32, device=device).unsqueeze(1)
        idx = torch.arange(0, dim, 2, dtype=torch.float32, device=device).unsqueeze(0)
        freq = torch.exp(idx * (-torch.log(torch.tensor(10000.0, device=device)) / dim))
        ang = pos * freq
        return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)       # not interleaved

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.embedding_convPxP(x).flatten(2)
        e = F.pad(e, (1, 0)).transpose(1, 2)                            # B x (1+S) x dim
        e = e + self.positions(e.shape[1], e.shape[2], e.device)
        for layer in self.transformer_encoder.layers:
            e = layer(e)
        return e


def head_indices(head_names: Sequence[str], domain, logits: Optional[torch.Tensor], batch: int) -> List[int]:
    """Per-image head index: ``domain`` None/"auto" (router argmax, first head without a router),
    "indoor"/"outdoor"/"nyu"/"kitti", a head index, or a per-image sequence of those."""
    if domain is None or (isinstance(domain, str) and domain == "auto"):
        if logits is None:
            return [0] * batch
        return logits.argmax(dim=1).tolist()
    if isinstance(domain, (str, int)):
        domain = [domain] * batch
    if isinstance(domain, torch.Tensor):
        domain = domain.tolist()
    if len(domain) != batch:
        raise ValueError(f"domain has {len(domain)} entries for a batch of {batch}")
    out = []
    for d in domain:
        if isinstance(d, str):
            name = _HEAD_OF_DOMAIN.get(d)
            if name not in head_names:
                raise ValueError(f"domain '{d}' is not available in this ZoeDepth model "
                                 f"(heads: {', '.join(DOMAINS[n] for n in head_names)})")
            out.append(list(head_names).index(name))
        else:
            if not 0 <= int(d) < len(head_names):
                raise ValueError(f"head index {d} out of range")
            out.append(int(d))
    return out


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------
class ZoeDepthNet(nn.Module):
    """ZoeDepth network. ``forward(x)`` takes B x 3 x H x W RGB in [0, 1] (any size) and returns a dict:

    * ``metric_depth``  B x 1 x h x w metres at network resolution (see ``network_size``);
    * ``domain_logits`` B x 2 (NK only; index 0 = NYU/indoor, 1 = KITTI/outdoor);
    * ``domain_index``  B (long) head used per image;
    * with ``return_probs``: ``probs`` and ``bin_centers`` (B x 64 x h x w);
    * with ``return_confidence``: ``confidence`` B x 1 x h x w in [0, 1] (module docstring).

    ``domain``: None/"auto" (router, per image), "indoor"/"outdoor", or a per-image sequence of those
    or of head indices. The metric heads and the router always run in float32.
    """

    def __init__(self, variant: str = "nk", backbone: str = "beitl16_384", img_size: Optional[Sequence[int]] = None,
                 keep_aspect: bool = True):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown ZoeDepth variant '{variant}'; known: {', '.join(VARIANTS)}")
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone '{backbone}'; known: {', '.join(BACKBONES)}")
        spec = VARIANTS[variant]
        self.variant = variant
        self.backbone = backbone
        if img_size is None:
            img_size = _TINY_IMG_SIZE if backbone == "test_tiny" else spec["img_size"]
        self.core = DepthCore(backbone, img_size, keep_aspect)
        width = self.core.core.width
        c_out = self.core.core.head_features
        normed = spec["bins"] == "normed"
        self.heads_spec = tuple(spec["heads"])
        self.head_names = tuple(h[0] for h in self.heads_spec)
        emb = BIN_EMBEDDING

        self.conv2 = nn.Conv2d(width, width, 1)
        if len(self.heads_spec) > 1:
            self.patch_transformer = PatchTransformer(width, ff=ROUTER_FF[backbone])
            self.mlp_classifier = nn.Sequential(nn.Linear(ROUTER_WIDTH, ROUTER_WIDTH), nn.ReLU(),
                                                nn.Linear(ROUTER_WIDTH, len(self.heads_spec)))
            self.seed_bin_regressors = nn.ModuleDict({
                name: SeedBins(width, N_BINS, emb // 2, normed, lo, hi) for name, lo, hi in self.heads_spec})
            self.seed_projector = Projector(width, emb, emb // 2)
            self.projectors = nn.ModuleList([Projector(width, emb, emb // 2) for _ in range(4)])
            # Official quirk kept: NK passes [16, 8, 4, 1] to an unused argument, so every layer has 16.
            self.attractors = nn.ModuleDict({
                name: nn.ModuleList([Attractor(emb, 16, normed, lo, hi) for _ in range(4)])
                for name, lo, hi in self.heads_spec})
            self.conditional_log_binomial = nn.ModuleDict({
                name: ConditionalLogBinomial(c_out, emb, N_BINS, bottleneck_factor=4) for name, *_ in self.heads_spec})
        else:
            _, lo, hi = self.heads_spec[0]
            self.seed_bin_regressor = SeedBins(width, N_BINS, 256, normed, lo, hi)
            self.seed_projector = Projector(width, emb, 128)
            self.projectors = nn.ModuleList([Projector(width, emb, 128) for _ in range(4)])
            self.attractors = nn.ModuleList([Attractor(emb, n, normed, lo, hi) for n in (16, 8, 4, 1)])
            # Single-head models also condition on the MiDaS relative depth (+1 channel).
            self.conditional_log_binomial = ConditionalLogBinomial(c_out + 1, emb, N_BINS, bottleneck_factor=2)
        self._head_impl = self._head

    @property
    def routed(self) -> bool:
        return len(self.heads_spec) > 1

    def network_size(self, h: int, w: int) -> Tuple[int, int]:
        return self.core.network_size(h, w)

    # -- stages ---------------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> DPTFeatures:
        """Pre-processing + DPT (runs in the core's dtype)."""
        return self.core(x)

    def route(self, feats: DPTFeatures) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Bottleneck (after conv2) and, for NK, the router's domain logits (B x 2). float32."""
        with no_autocast(feats.l4_rn.device.type):
            bott = self.conv2(feats.l4_rn.float())
            if not self.routed:
                return bott, None
            token = self.patch_transformer(bott)[:, 0]
            return bott, self.mlp_classifier(token)

    def head_indices(self, domain, logits: Optional[torch.Tensor], batch: int) -> List[int]:
        """Per-image head index from ``domain`` (see class docstring) and the router logits."""
        return head_indices(self.head_names, domain, logits, batch)

    def _head(self, name: str, bott: torch.Tensor, r4, r3, r2, r1, out_conv, rel_depth,
              return_probs: bool, return_confidence: bool) -> Dict[str, torch.Tensor]:
        if self.routed:
            seed, attractors, clb = (self.seed_bin_regressors[name], self.attractors[name],
                                     self.conditional_log_binomial[name])
        else:
            seed, attractors, clb = self.seed_bin_regressor, self.attractors, self.conditional_log_binomial
        centres = seed(bott)
        bins = (centres - seed.min_depth) / (seed.max_depth - seed.min_depth) if seed.normed else centres
        prev_emb = self.seed_projector(bott)
        emb = prev_emb
        for projector, attractor, feat in zip(self.projectors, attractors, (r4, r3, r2, r1)):
            emb = projector(feat)
            bins, centres = attractor(emb, bins, prev_emb)
            prev_emb = emb
        last = out_conv
        if not self.routed:
            rel = rel_depth if rel_depth.shape[-2:] == last.shape[-2:] else _up(rel_depth, last.shape[-2:])
            last = torch.cat([last, rel], dim=1)
        size = last.shape[-2:]
        probs = clb(last, _up(emb, size))
        centres = _up(centres, size)
        depth = torch.sum(probs * centres, dim=1, keepdim=True)
        out = {"metric_depth": depth}
        if return_confidence:
            out["confidence"] = bin_confidence(probs, centres, depth)
        if return_probs:
            out["probs"] = probs
            out["bin_centers"] = centres
        return out

    def metric_heads(self, feats: DPTFeatures, bott: torch.Tensor, head_index: Sequence[int],
                     return_probs: bool = False, return_confidence: bool = False) -> Dict[str, torch.Tensor]:
        """Run each image through its head (``head_index[i]``); float32."""
        device_type = bott.device.type
        with no_autocast(device_type):
            maps = [feats.r4, feats.r3, feats.r2, feats.r1, feats.out_conv, feats.rel_depth]
            maps = [m.float() for m in maps]
            groups: Dict[int, List[int]] = {}
            for i, h in enumerate(head_index):
                groups.setdefault(int(h), []).append(i)
            if len(groups) == 1:
                (h,) = groups
                return self._head_impl(self.head_names[h], bott, *maps, return_probs, return_confidence)
            out: Dict[str, torch.Tensor] = {}
            for h, ids in groups.items():
                sel = torch.tensor(ids, device=bott.device)
                res = self._head_impl(self.head_names[h], bott.index_select(0, sel),
                                      *[m.index_select(0, sel) for m in maps], return_probs, return_confidence)
                for key, val in res.items():
                    if key not in out:
                        out[key] = val.new_empty((len(head_index),) + tuple(val.shape[1:]))
                    out[key].index_copy_(0, sel, val)
            return out

    def forward(self, x: torch.Tensor, domain=None, return_probs: bool = False,
                return_confidence: bool = False) -> Dict[str, torch.Tensor]:
        feats = self.features(x)
        bott, logits = self.route(feats)
        idx = self.head_indices(domain, logits, x.shape[0])
        out = self.metric_heads(feats, bott, idx, return_probs, return_confidence)
        if logits is not None:
            out["domain_logits"] = logits
        out["domain_index"] = torch.tensor(idx, dtype=torch.long, device=x.device)
        return out

    def compile_parts(self, **kwargs) -> None:
        """torch.compile the DPT (per input size) and the metric head; routing and caches stay eager."""
        self.core.core.compile_features(**kwargs)
        self._head_impl = torch.compile(self._head, **kwargs)


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------
_BEIT = "core.core.pretrained.model."
_DROP_OFFICIAL = (
    # Obsolete timm buffer (persistent before timm 0.9.x); the index is rebuilt per input size.
    re.compile(r"^core\.core\.pretrained\.model\.blocks\.\d+\.attn\.relative_position_index$"),
    # The BEiT's ImageNet classifier (fc_norm + head) is not used by the dense predictor.
    re.compile(r"^core\.core\.pretrained\.model\.(fc_norm|head)\.(weight|bias)$"),
)


def is_hf_layout(state_dict: dict) -> bool:
    return any(k.startswith(("backbone.", "neck.", "metric_head.", "relative_head.")) for k in state_dict)


# transformers 4.x BEiT names -> 5.x names (applied first, in order).
_HF4_TO_5 = [
    (r"^backbone\.embeddings\.", "backbone.beit.embeddings."),
    (r"^backbone\.encoder\.layer\.(\d+)\.", r"backbone.beit.layers.\1."),
    (r"\.attention\.attention\.relative_position_bias\.", ".relative_position_bias."),
    (r"\.attention\.attention\.query\.", ".attention.q_proj."),
    (r"\.attention\.attention\.key\.", ".attention.k_proj."),
    (r"\.attention\.attention\.value\.", ".attention.v_proj."),
    (r"\.attention\.output\.dense\.", ".attention.o_proj."),
    (r"\.intermediate\.dense\.", ".mlp.fc1."),
    (r"(?<!attention)\.output\.dense\.", ".mlp.fc2."),
]
_B = r"^backbone\.beit\.layers\.(\d+)\."
_HF_RULES = [
    (r"^backbone\.beit\.embeddings\.cls_token$", _BEIT + "cls_token"),
    (r"^backbone\.beit\.embeddings\.patch_embeddings\.projection\.", _BEIT + "patch_embed.proj."),
    (_B + r"lambda_1$", _BEIT + r"blocks.\1.gamma_1"),
    (_B + r"lambda_2$", _BEIT + r"blocks.\1.gamma_2"),
    (_B + r"layernorm_before\.", _BEIT + r"blocks.\1.norm1."),
    (_B + r"layernorm_after\.", _BEIT + r"blocks.\1.norm2."),
    (_B + r"attention\.q_proj\.bias$", _BEIT + r"blocks.\1.attn.q_bias"),
    (_B + r"attention\.v_proj\.bias$", _BEIT + r"blocks.\1.attn.v_bias"),
    (_B + r"attention\.o_proj\.", _BEIT + r"blocks.\1.attn.proj."),
    (_B + r"mlp\.fc(\d)\.", _BEIT + r"blocks.\1.mlp.fc\2."),
    (_B + r"relative_position_bias\.relative_position_bias_table$",
     _BEIT + r"blocks.\1.attn.relative_position_bias_table"),
    (r"^neck\.reassemble_stage\.readout_projects\.(\d)\.0\.",
     lambda m: f"core.core.pretrained.act_postprocess{int(m.group(1)) + 1}.0.project.0."),
    (r"^neck\.reassemble_stage\.layers\.(\d)\.projection\.",
     lambda m: f"core.core.pretrained.act_postprocess{int(m.group(1)) + 1}.3."),
    (r"^neck\.reassemble_stage\.layers\.(\d)\.resize\.",
     lambda m: f"core.core.pretrained.act_postprocess{int(m.group(1)) + 1}.4."),
    (r"^neck\.convs\.(\d)\.", lambda m: f"core.core.scratch.layer{int(m.group(1)) + 1}_rn."),
    (r"^neck\.fusion_stage\.layers\.(\d)\.projection\.",
     lambda m: f"core.core.scratch.refinenet{4 - int(m.group(1))}.out_conv."),
    (r"^neck\.fusion_stage\.layers\.(\d)\.residual_layer(\d)\.convolution(\d)\.",
     lambda m: f"core.core.scratch.refinenet{4 - int(m.group(1))}.resConfUnit{m.group(2)}.conv{m.group(3)}."),
    (r"^relative_head\.conv(\d)\.", lambda m: f"core.core.scratch.output_conv.{2 * (int(m.group(1)) - 1)}."),
    (r"^metric_head\.conv2\.", "conv2."),
    (r"^metric_head\.patch_transformer\.embedding_convPxP\.", "patch_transformer.embedding_convPxP."),
    (r"^metric_head\.patch_transformer\.transformer_encoder\.(\d+)\.self_attn\.out_proj\.",
     r"patch_transformer.transformer_encoder.layers.\1.self_attn.out_proj."),
    (r"^metric_head\.patch_transformer\.transformer_encoder\.(\d+)\.(linear1|linear2|norm1|norm2)\.",
     r"patch_transformer.transformer_encoder.layers.\1.\2."),
    (r"^metric_head\.mlp_classifier\.linear1\.", "mlp_classifier.0."),
    (r"^metric_head\.mlp_classifier\.linear2\.", "mlp_classifier.2."),
    (r"^metric_head\.((?:seed_bin_regressors\.\w+|seed_bin_regressor|seed_projector|projectors\.\d+|"
     r"attractors\.\w+\.\d+|attractors\.\d+))\.conv(\d)\.",
     lambda m: f"{m.group(1)}._net.{2 * (int(m.group(2)) - 1)}."),
    (r"^metric_head\.(conditional_log_binomial(?:\.\w+)?)\.mlp\.(\d)\.", r"\1.mlp.\2."),
]
_HF_RULES = [(re.compile(p), r) for p, r in _HF_RULES]
_HF4_TO_5 = [(re.compile(p), r) for p, r in _HF4_TO_5]


def convert_hf_state_dict(state_dict: dict, net: Optional[ZoeDepthNet] = None) -> dict:
    """Map a Hugging Face ``ZoeDepthForDepthEstimation`` state_dict (transformers 5.x or 4.x names) to ours.

    q/k/v projections are fused back into BEiT's ``qkv`` (k has no bias) and into the router's
    ``in_proj``; the log-binomial constants (not stored by HF) are filled in. Unknown keys are kept as
    they are so that strict loading names them.
    """
    sd = {}
    for key, val in state_dict.items():
        for pat, rep in _HF4_TO_5:
            key = pat.sub(rep, key)
        sd[key] = val
    out: Dict[str, torch.Tensor] = {}
    qkv: Dict[Tuple[str, str], Dict[str, torch.Tensor]] = {}
    for key, val in sd.items():
        m = re.match(_B + r"attention\.(q|k|v)_proj\.weight$", key)
        if m:
            qkv.setdefault((_BEIT + f"blocks.{m.group(1)}.attn.qkv.weight", "w"), {})[m.group(2)] = val
            continue
        m = re.match(_B + r"attention\.k_proj\.bias$", key)
        if m:
            if torch.count_nonzero(val):
                raise WeightsError(f"{key}: BEiT has no key bias but this checkpoint has a non-zero one")
            continue
        m = re.match(r"^metric_head\.patch_transformer\.transformer_encoder\.(\d+)\.self_attn\.(query|key|value)\."
                     r"(weight|bias)$", key)
        if m:
            name = f"patch_transformer.transformer_encoder.layers.{m.group(1)}.self_attn.in_proj_{m.group(3)}"
            qkv.setdefault((name, m.group(3)), {})[m.group(2)[0]] = val
            continue
        if key.endswith("relative_position_index"):
            continue
        for pat, rep in _HF_RULES:
            new, n = pat.subn(rep, key)
            if n:
                key = new
                break
        out[key] = val
    for (name, _), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise WeightsError(f"Hugging Face checkpoint lacks the {'/'.join(sorted({'q', 'k', 'v'} - set(parts)))} "
                               f"part of {name}")
        out[name] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    heads = [n for n in (net.head_names if net is not None else ("nyu", "kitti"))]
    routed = net.routed if net is not None else any(k.startswith("mlp_classifier.") for k in out)
    for name in (heads if routed else [None]):
        prefix = "conditional_log_binomial." + (f"{name}." if name else "")
        if prefix + "mlp.0.weight" in out:
            out.setdefault(prefix + "log_binomial_transform.k_idx", torch.arange(N_BINS).view(1, -1, 1, 1))
            out.setdefault(prefix + "log_binomial_transform.K_minus_1", torch.tensor([N_BINS - 1.0]).view(1, 1, 1, 1))
    return out


def checkpoint_filter_fn(state_dict: dict, net: Optional[ZoeDepthNet] = None) -> dict:
    """Bring a checkpoint to this module's layout (timm-style filter).

    Official files (``{'model': state_dict}``, already unwrapped by ``weights.load_state_dict``) keep their
    names; only the obsolete ``blocks.N.attn.relative_position_index`` buffers and the unused BEiT
    classifier (``fc_norm``, ``head``) are dropped, on purpose. Hugging Face layouts are converted with
    ``convert_hf_state_dict``. Everything else must match exactly (``load_strict``).
    """
    if is_hf_layout(state_dict):
        state_dict = convert_hf_state_dict(state_dict, net)
    return {k: v for k, v in state_dict.items() if not any(p.match(k) for p in _DROP_OFFICIAL)}


def _materialise_buffers(net: nn.Module) -> None:
    """After a meta-device build + assign-load: rebuild the non-persistent buffers timm keeps."""
    for mod_name, mod in net.named_modules():
        for buf_name, buf in list(mod.named_buffers(recurse=False)):
            if not buf.is_meta:
                continue
            if buf_name == "k_bias":
                new = torch.zeros(buf.shape, dtype=buf.dtype)
            elif buf_name == "relative_position_index":
                new = relative_position_index(*mod.window_size)
            else:
                raise WeightsError(f"checkpoint left buffer {mod_name}.{buf_name} uninitialised")
            mod.register_buffer(buf_name, new, persistent=buf_name not in mod._non_persistent_buffers_set)


def net_from_state_dict(state_dict: dict, variant: str = "nk", backbone: str = "beitl16_384",
                        img_size: Optional[Sequence[int]] = None, keep_aspect: bool = True,
                        source: str = "checkpoint") -> ZoeDepthNet:
    """Build a ``ZoeDepthNet`` on the meta device and adopt a checkpoint's tensors (official or HF layout).

    No random initialisation and no second copy of the weights; strict (``load_strict``). float32 result.
    """
    with torch.device("meta"):
        net = ZoeDepthNet(variant, backbone, img_size, keep_aspect)
    load_strict(net, checkpoint_filter_fn(state_dict, net), source=source, assign=True)
    _materialise_buffers(net)
    return net.float()


# ---------------------------------------------------------------------------------------------
# DepthModel wrapper
# ---------------------------------------------------------------------------------------------
_OPTIONS = ("backbone", "domain", "keep_aspect", "img_size", "flip_aug", "pad_input", "compile", "channels_last",
            "allow_download")


class ZoeDepth(DepthModel):
    """ZoeDepth as a ``DepthModel`` (see the module docstring for the options).

    ``infer(rgb)`` / ``infer_batch([rgb, ...])``: H x W x 3 uint8 RGB -> ``DepthPrediction`` with depth
    (metres, float32, input resolution), confidence, domain ("indoor"/"outdoor") and domain_confidence
    (router softmax probability of the head used; 1.0 for the single-domain N and K models). NK routes
    every image on its own. ``f_px`` is accepted and ignored (ZoeDepth does not use intrinsics).
    """

    def __init__(self, variant: str = "nk", weights=None, device="auto", dtype="float32", **config):
        self._check_options(variant, config)
        DepthModel.__init__(self, None, device, dtype)   # validates device and dtype before any loading
        backbone = config.get("backbone", "beitl16_384")
        img_size, keep_aspect = config.get("img_size"), config.get("keep_aspect", True)
        if isinstance(weights, str) and weights == "random":
            net = ZoeDepthNet(variant, backbone, img_size, keep_aspect)
        else:
            if backbone != "beitl16_384" and (weights is None or str(weights) == ""):
                raise WeightsError(f"there are no released ZoeDepth weights for backbone '{backbone}'; "
                                   "pass a checkpoint path or weights='random'")
            path = resolve_weights(weights, WEIGHTS[variant], allow_download=config.get("allow_download", True))
            net = net_from_state_dict(load_state_dict(path), variant, backbone, img_size, keep_aspect,
                                      source=f"weights file '{path}'")
        self._setup(net, config)

    @classmethod
    def from_net(cls, net: ZoeDepthNet, device="auto", dtype="float32", **config) -> "ZoeDepth":
        """Wrap an existing ``ZoeDepthNet`` (e.g. from ``net_from_state_dict``); same options as create_model."""
        self = cls.__new__(cls)
        cls._check_options(net.variant, config)
        DepthModel.__init__(self, None, device, dtype)
        self._setup(net, config)
        return self

    @staticmethod
    def _check_options(variant: str, config: dict) -> None:
        unknown = sorted(set(config) - set(_OPTIONS))
        if unknown:
            raise ValueError(f"unknown ZoeDepth option(s) {', '.join(unknown)}; known: {', '.join(_OPTIONS)}")
        if variant not in VARIANTS:
            raise ValueError(f"unknown ZoeDepth variant '{variant}'; known: {', '.join(VARIANTS)}")
        backbone = config.get("backbone", "beitl16_384")
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone '{backbone}'; known: {', '.join(BACKBONES)}")
        domain = str(config.get("domain", "auto")).lower()
        allowed = ["auto"] + [DOMAINS[h[0]] for h in VARIANTS[variant]["heads"]]
        if domain not in allowed:
            raise ValueError(f"domain '{domain}' is not available for zoedepth_{variant}; use one of {allowed}")

    def _setup(self, net: ZoeDepthNet, config: dict) -> None:
        self.variant = net.variant
        self.name = f"zoedepth_{net.variant}"
        self.flip_aug = bool(config.get("flip_aug", False))
        self.pad_input = bool(config.get("pad_input", False))
        net.eval().requires_grad_(False)
        net.to(self.device)
        if self.dtype != torch.float32:
            net.core.to(self.dtype)       # the metric heads and the router stay in float32
        channels_last = config.get("channels_last", "auto")
        if channels_last == "auto":
            channels_last = self.device.type == "cuda"
        if channels_last:
            net.core.to(memory_format=torch.channels_last)
        net.core.channels_last = bool(channels_last)
        comp = config.get("compile", False)
        if comp:
            net.compile_parts(**({"mode": comp} if isinstance(comp, str) and comp != "default" else {}))
        self.net = net
        self.capabilities = Capabilities(confidence=True, domains=self.domains, routes_domains=net.routed,
                                         batch=True)
        self._domain = "auto"
        self.domain = config.get("domain", "auto")

    # -- domain -------------------------------------------------------------------------------
    @property
    def domains(self) -> Tuple[str, ...]:
        return tuple(DOMAINS[n] for n in self.net.head_names)

    @property
    def domain(self) -> str:
        return self._domain

    @domain.setter
    def domain(self, value: str) -> None:
        value = str(value).lower()
        if value not in ("auto", "indoor", "outdoor"):
            raise ValueError(f"domain must be 'auto', 'indoor' or 'outdoor', got '{value}'")
        if value != "auto" and value not in self.domains:
            raise ValueError(f"{self.name} has no {value} head (it has: {', '.join(self.domains)})")
        self._domain = value

    # -- inference ----------------------------------------------------------------------------
    def infer(self, rgb: np.ndarray, f_px=None) -> DepthPrediction:
        focal_to_float(f_px)  # validated, not used
        return self.infer_batch([rgb])[0]

    def infer_batch(self, images: Sequence[np.ndarray]) -> List[DepthPrediction]:
        images = [check_rgb(im) for im in images]
        results: List[Optional[DepthPrediction]] = [None] * len(images)
        groups: Dict[tuple, List[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(im.shape, []).append(i)
        for ids in groups.values():
            batch = torch.from_numpy(np.stack([images[i] for i in ids])).to(self.device)
            batch = batch.permute(0, 3, 1, 2).float().div_(255.0)
            for i, pred in zip(ids, self.predict(batch)):
                results[i] = pred
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> List[DepthPrediction]:
        """B x 3 x H x W RGB in [0, 1] on ``self.device`` -> one DepthPrediction per image."""
        net = self.net
        b, _, h, w = x.shape
        domain = self._domain  # read once: the node may change it from another thread
        xs, pads = pad_and_flip(x, self.pad_input, self.flip_aug)
        feats = net.features(xs)            # the DPT runs in self.dtype (weights converted, no autocast)
        bott, logits = net.route(feats)
        img_logits = image_logits(logits, b, self.flip_aug)
        idx = net.head_indices(None if domain == "auto" else domain, img_logits, b)
        out = net.metric_heads(feats, bott, idx * 2 if self.flip_aug else idx, return_confidence=True)
        return to_predictions(out["metric_depth"], out["confidence"], img_logits, idx, net.head_names, (h, w), pads,
                              self.flip_aug)


# ---------------------------------------------------------------------------------------------
# Pre/post-processing around the network (shared by the PyTorch and the ONNX Runtime backends)
# ---------------------------------------------------------------------------------------------
def pad_and_flip(x: torch.Tensor, pad_input: bool, flip_aug: bool) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """B x 3 x H x W [0, 1] -> the batch the network sees (before resizing) and the (top, left) padding:
    reflect padding (``pad_input``) and, with ``flip_aug``, the mirrored images appended (2B images)."""
    h, w = x.shape[-2:]
    if pad_input:
        ph = min(int(math.sqrt(h / 2) * 3), h - 1)
        pw = min(int(math.sqrt(w / 2) * 3), w - 1)
        x = F.pad(x, (pw, pw, ph, ph), mode="reflect")
    else:
        ph = pw = 0
    return (torch.cat([x, torch.flip(x, dims=[3])]) if flip_aug else x), (ph, pw)


def image_logits(logits: Optional[torch.Tensor], batch: int, flip_aug: bool) -> Optional[torch.Tensor]:
    """Router logits per image: with ``flip_aug`` the mean of an image's two passes (both then use one head)."""
    if logits is None:
        return None
    return (logits[:batch] + logits[batch:]) / 2 if flip_aug else logits


def to_predictions(depth: torch.Tensor, conf: torch.Tensor, img_logits: Optional[torch.Tensor], idx: Sequence[int],
                   head_names: Sequence[str], size: Tuple[int, int], pads: Tuple[int, int],
                   flip_aug: bool) -> List[DepthPrediction]:
    """Network-resolution depth/confidence (B or 2B x 1 x h x w, each image through head ``idx[i]``) ->
    one ``DepthPrediction`` per image at ``size`` (flip average, resize, crop of the padding)."""
    h, w = size
    ph, pw = pads
    b = len(idx)
    probs = torch.softmax(img_logits.float(), dim=1) if img_logits is not None else None
    if flip_aug:
        depth = (depth[:b] + torch.flip(depth[b:], dims=[3])) / 2
        conf = (conf[:b] + torch.flip(conf[b:], dims=[3])) / 2
    hp, wp = h + 2 * ph, w + 2 * pw
    if depth.shape[-2:] != (hp, wp):
        depth = F.interpolate(depth, size=(hp, wp), mode="bicubic", align_corners=False)
        conf = F.interpolate(conf, size=(hp, wp), mode="bilinear", align_corners=False)
    depth = depth[:, 0, ph:ph + h, pw:pw + w].clamp_min(1e-3)   # bicubic can undershoot near edges
    conf = conf[:, 0, ph:ph + h, pw:pw + w].clamp(0, 1)
    depth_np = depth.float().cpu().numpy()
    conf_np = conf.float().cpu().numpy()
    preds = []
    for i in range(b):
        name = head_names[idx[i]]
        dconf = float(probs[i, idx[i]]) if probs is not None else 1.0
        preds.append(DepthPrediction(depth=np.ascontiguousarray(depth_np[i], dtype=np.float32),
                                     confidence=np.ascontiguousarray(conf_np[i], dtype=np.float32),
                                     focal_px=None, focal_source=None, domain=DOMAINS[name],
                                     domain_confidence=dconf,
                                     domain_logits=(None if img_logits is None else
                                                    (float(img_logits[i, 0]), float(img_logits[i, 1])))))
    return preds


def _factory(variant):
    def build(weights=None, device="auto", dtype="float32", **config):
        return ZoeDepth(variant, weights=weights, device=device, dtype=dtype, **config)
    build.__name__ = f"zoedepth_{variant}"
    build.__doc__ = f"ZoeD-M12-{variant.upper()} (see depth_ros.models.zoedepth)."
    return build


zoedepth_nk = register_model("zoedepth_nk")(_factory("nk"))
zoedepth_n = register_model("zoedepth_n")(_factory("n"))
zoedepth_k = register_model("zoedepth_k")(_factory("k"))
