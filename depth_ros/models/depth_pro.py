"""Depth Pro (Bochkovskii et al., 2024): sharp monocular metric depth with focal-length estimation.

Written for depth_ros from the published architecture; parameter names follow the released
checkpoint (``depth_pro.pt``) so that it loads strictly, and the Hugging Face layout
(``apple/DepthPro-hf``, transformers 5.x names and the older ``attention.attention.query`` names)
is converted on load.

Network summary (released ``dinov2l16_384`` preset, network input S = 1536):

* three ViTs with separate weights (patch, image and FOV encoders), timm DINOv2 models re-cut to
  patch 16 / image 384; ``forward_features`` tokens (after the final LayerNorm);
* the input (squashed to S x S, bilinear, no antialias) forms a 3-level pyramid (S, S/2, S/4) cut into
  5x5 (25 % overlap), 3x3 (50 % overlap) and 1 patch(es) of 384 -> 35 patches in one batch through the
  patch encoder; the outputs of two intermediate blocks (5 and 11) are kept for the 25 full-resolution
  patches only, merged right away, and the block outputs are dropped;
* overlapping patch features are merged by cropping ``tokens * overlap / 2`` tokens on interior edges,
  projected/upsampled, fused with the image encoder's global feature, decoded by a 5-level DPT-like
  decoder and a small head into the canonical inverse depth C (S x S, >= 0);
* the FOV network (its own ViT on the S/4 image, a linear layer, plus a strided conv of the *detached*
  low-resolution decoder feature, three convs) predicts the horizontal field of view in degrees.

Metric depth: ``f_px = 0.5 W / tan(fov / 2)`` unless the caller gives ``f_px``;
``depth = 1 / clamp(resize(C * W / f_px, (H, W)), 1e-4, 1e4)``, i.e. ``D = f_px / (W * C)``.
"""
from __future__ import annotations

import contextlib
import math
import re
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from depth_ros.core.camera import focal_from_hfov
from depth_ros.models.base import (
    Capabilities,
    DepthModel,
    DepthPrediction,
    FocalLike,
    check_rgb,
    focal_to_float,
    resolve_device,
    resolve_dtype,
    rgb_to_tensor,
)
from depth_ros.models.confidence import flip_confidence_torch
from depth_ros.models.registry import register_model
from depth_ros.models.weights import WeightsError, WeightsSpec, load_state_dict, load_strict, resolve_weights

__all__ = [
    "DEPTH_PRO_WEIGHTS", "FOV_RANGE_DEG", "VIT_PRESETS", "ViTPreset", "DepthProConfig", "DepthProNet",
    "DepthPro", "FP32_MODULES", "checkpoint_filter_fn", "convert_hf_state_dict", "fov_to_focal", "recut_vit",
    "hf_config", "create_depth_pro_net", "depth_pro", "upsampling_head", "fold_upsampling_head",
    "apply_folded_head",
]

DEPTH_PRO_URL = "https://ml-site.cdn-apple.com/models/depth-pro/depth_pro.pt"
# sha256 deliberately not enforced: the only digest known here comes from a third-party mirror
# (1,904,446,787 B, sha256 3eb35ca68168ad3d14cb150f8947a4edf85589941661fdb2686259c80685c0ce) and has
# not been verified against Apple's file.
DEPTH_PRO_WEIGHTS = WeightsSpec(filename="depth_pro.pt", url=DEPTH_PRO_URL, sha256=None)

#: An estimated horizontal FOV is clamped to this open interval (degrees) before it becomes a focal
#: length, so that a broken/random FOV head cannot give a negative, zero or infinite focal length.
#: Real Depth Pro weights predict values far inside it, where the clamp changes nothing.
FOV_RANGE_DEG = (1.0, 179.0)
#: FOV used when the network returns a non-finite value (only seen with broken/random weights).
FOV_FALLBACK_DEG = 60.0
#: Initial bias of the head's last conv for random weights (see ``DepthProNet``).
RANDOM_INIT_INVERSE_DEPTH = 0.1
#: Inverse depth is clamped to this range before inversion (official), so depth is in [1e-4, 1e4] m.
INVERSE_DEPTH_RANGE = (1e-4, 1e4)
#: ``DepthPro(confidence=...)``: "flip" runs the image and its mirror as one batch of 2 and sets
#: ``DepthPrediction.confidence`` from their disagreement (``depth_ros.core.confidence.flip_confidence``);
#: "none" runs the image alone (no confidence). The network has no uncertainty output of its own.
CONFIDENCE_MODES = ("flip", "none")
#: Sub-modules that stay float32 when the network runs in bfloat16 / float16 (``DepthProNet.set_precision``):
#: the last two head convolutions (``head.2`` 3x3 and ``head.4`` 1x1, at full resolution) and the FOV
#: network after its ViT (``fov.encoder.1`` token projection, ``fov.downsample``, ``fov.head``). The three
#: ViTs, the upsampling blocks, the decoder and the first head layers run in the requested dtype.
FP32_MODULES = ("head.2", "head.4", "fov.encoder.1", "fov.downsample", "fov.head")


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ViTPreset:
    """A ViT backbone re-cut for Depth Pro.

    timm_name: the timm DINOv2 model whose architecture is used (built with ``pretrained=False``).
    embed_dim / depth / num_heads: its width, number of blocks and attention heads.
    hook_block_ids: patch-encoder blocks whose outputs feed the decoder (only the first two are used;
      the released preset lists four, as the official code does).
    feature_dims: encoder feature widths [latent, x0 (S), x1 (S/2), x2 + global (S/4)].
    img_size / patch_size: the re-cut backbone's input size and patch size (384 / 16 released).
    timm_img_size / timm_patch_size: the timm model's native sizes (518 / 14), only relevant when
      starting from timm-pretrained DINOv2 weights (see ``recut_vit``).
    """

    timm_name: str
    embed_dim: int
    depth: int
    num_heads: int
    hook_block_ids: Tuple[int, ...]
    feature_dims: Tuple[int, int, int, int]
    img_size: int = 384
    patch_size: int = 16
    timm_img_size: int = 518
    timm_patch_size: int = 14

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size


VIT_PRESETS: Dict[str, ViTPreset] = {
    # Released Depth Pro backbone (all three encoders).
    "dinov2l16_384": ViTPreset("vit_large_patch14_dinov2", 1024, 24, 16, (5, 11, 17, 23), (256, 512, 1024, 1024)),
    # Smaller backbones defined the same way (no released weights; for training/experiments/benchmarks).
    "dinov2b16_384": ViTPreset("vit_base_patch14_dinov2", 768, 12, 12, (2, 5, 8, 11), (96, 192, 384, 768)),
    "dinov2s16_384": ViTPreset("vit_small_patch14_dinov2", 384, 12, 6, (2, 5, 8, 11), (48, 96, 192, 384)),
    # Tiny random configuration for unit tests: 2 blocks, width 32, patch 4, backbone input 32 ->
    # network input 128 (8x8 tokens per patch, the smallest grid whose 25 % overlap crops are whole tokens).
    "test_tiny": ViTPreset("vit_small_patch14_dinov2", 32, 2, 2, (0, 1, 1, 1), (16, 16, 32, 32),
                           img_size=32, patch_size=4),
}


@dataclass(frozen=True)
class DepthProConfig:
    """Depth Pro network configuration.

    vit_preset: a key of ``VIT_PRESETS`` (used for the patch, image and FOV encoders) or a ``ViTPreset``.
    decoder_features: decoder width (256 released; a multiple of 8).
    use_fov: build the FOV network (``fov.*`` weights). Without it, ``f_px`` must be supplied.
    last_dims: widths of the head's last two convolutions (32, 1 released).
    patch_batch: pyramid patches per patch-encoder pass (per image); 0 runs all 35 in one pass, as the
      official code does. Passes of a few patches give the same numbers (each patch is encoded on its own)
      and keep a pass's activations in a CPU's cache: 5 makes the ONNX Runtime CPU graph about 10 %
      faster (``bench/bench_onnx.py``). GPUs want 0 (one large batch). Not a weight: any value loads any
      checkpoint.
    """

    vit_preset: Union[str, ViTPreset] = "dinov2l16_384"
    decoder_features: int = 256
    use_fov: bool = True
    last_dims: Tuple[int, int] = (32, 1)
    patch_batch: int = 0

    def __post_init__(self):
        vit = self.vit  # validates the name
        g = vit.grid_size
        if vit.img_size % vit.patch_size:
            raise ValueError(f"ViT img_size {vit.img_size} is not a multiple of patch_size {vit.patch_size}")
        if g % 8:
            raise ValueError(f"ViT token grid {g} must be a multiple of 8 (overlap crops of whole tokens)")
        if len(vit.hook_block_ids) < 2 or max(vit.hook_block_ids[:2]) >= vit.depth:
            raise ValueError(f"hook_block_ids {vit.hook_block_ids} invalid for a {vit.depth}-block ViT")
        if self.decoder_features < 8 or self.decoder_features % 8:
            raise ValueError(f"decoder_features must be a positive multiple of 8, got {self.decoder_features}")
        if isinstance(self.patch_batch, bool) or not isinstance(self.patch_batch, int) or self.patch_batch < 0:
            raise ValueError(f"patch_batch must be an integer >= 0 (0: all patches in one pass), "
                             f"got {self.patch_batch!r}")

    @property
    def vit(self) -> ViTPreset:
        if isinstance(self.vit_preset, ViTPreset):
            return self.vit_preset
        try:
            return VIT_PRESETS[self.vit_preset]
        except KeyError:
            raise ValueError(f"unknown vit_preset '{self.vit_preset}'; known: {', '.join(VIT_PRESETS)}") from None

    @property
    def img_size(self) -> int:
        """Network input size: 4x the backbone input (1536 for the released presets)."""
        return 4 * self.vit.img_size


# ---------------------------------------------------------------------------------------------
# Backbones
# ---------------------------------------------------------------------------------------------
def recut_vit(vit: nn.Module, patch_size: int, img_size: int) -> nn.Module:
    """Re-cut a timm ViT in place to ``patch_size`` / ``img_size``.

    The patch-embedding kernel is resampled bicubically and rescaled by (old/new)^2 so that the
    embedding of a smooth image stays about the same; the absolute position grid (plus the class token
    entry) is resampled with timm's ``resample_abs_pos_embed``. Only needed when starting from
    timm-pretrained DINOv2 weights (patch 14 / 518): with a Depth Pro checkpoint the backbones are
    created directly at the target sizes, since every weight is overwritten anyway.
    """
    from timm.layers import resample_abs_pos_embed

    pe = vit.patch_embed
    old_p = tuple(pe.patch_size)
    new_p = (patch_size, patch_size)
    if old_p != new_p:
        w = pe.proj.weight.detach()
        w_new = F.interpolate(w.float(), size=new_p, mode="bicubic", align_corners=False)
        w_new = w_new * (old_p[0] / new_p[0]) * (old_p[1] / new_p[1])
        proj = nn.Conv2d(pe.proj.in_channels, pe.proj.out_channels, kernel_size=new_p, stride=new_p,
                         bias=pe.proj.bias is not None, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            proj.weight.copy_(w_new.to(w.dtype))
            if pe.proj.bias is not None:
                proj.bias.copy_(pe.proj.bias)
        pe.proj = proj
        pe.patch_size = new_p
    grid = (img_size // patch_size, img_size // patch_size)
    old_grid = tuple(pe.grid_size)
    pe.img_size = (img_size, img_size)
    pe.grid_size = grid
    pe.num_patches = grid[0] * grid[1]
    if vit.pos_embed is not None and old_grid != grid:
        n_prefix = 0 if getattr(vit, "no_embed_class", False) else vit.num_prefix_tokens
        pos = resample_abs_pos_embed(vit.pos_embed.detach(), new_size=list(grid), old_size=list(old_grid),
                                     num_prefix_tokens=n_prefix)
        vit.pos_embed = nn.Parameter(pos)
    return vit


def create_vit(preset: ViTPreset, timm_pretrained: bool = False) -> nn.Module:
    """A timm DINOv2 ViT at ``preset.patch_size`` / ``preset.img_size`` (classifier-free).

    ``timm_pretrained=False`` (default, used with Depth Pro checkpoints or random weights): built
    directly at the target sizes. ``True``: timm's pretrained DINOv2 weights at 14 / 518 (downloaded by
    timm), then ``recut_vit``; this is how the official code initialises its backbones.
    """
    import timm

    arch = dict(embed_dim=preset.embed_dim, depth=preset.depth, num_heads=preset.num_heads, num_classes=0)
    if timm_pretrained:
        vit = timm.create_model(preset.timm_name, pretrained=True, img_size=preset.timm_img_size,
                                patch_size=preset.timm_patch_size, **arch)
        return recut_vit(vit, preset.patch_size, preset.img_size)
    return timm.create_model(preset.timm_name, pretrained=False, img_size=preset.img_size,
                             patch_size=preset.patch_size, **arch)


def _tokens_to_grid(tokens: torch.Tensor, num_prefix: int, grid: int) -> torch.Tensor:
    """(B, prefix + g*g, C) tokens -> (B, C, g, g) feature map."""
    b, _, c = tokens.shape
    return tokens[:, num_prefix:, :].reshape(b, grid, grid, c).permute(0, 3, 1, 2)


def _upsample_block(dim_in: int, dim_out: int, n_up: int, dim_mid: Optional[int] = None) -> nn.Sequential:
    """1x1 projection (no bias) then ``n_up`` 2x transposed convolutions (no bias)."""
    dim_mid = dim_out if dim_mid is None else dim_mid
    layers: List[nn.Module] = [nn.Conv2d(dim_in, dim_mid, kernel_size=1, bias=False)]
    for i in range(n_up):
        layers.append(nn.ConvTranspose2d(dim_mid if i == 0 else dim_out, dim_out, kernel_size=2, stride=2, bias=False))
    return nn.Sequential(*layers)


def _cat(parts: List[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)


class DepthProEncoder(nn.Module):
    """Multi-resolution patch encoder + global image encoder (parameter names = ``encoder.*``)."""

    #: pyramid levels: (scale, patch overlap ratio)
    LEVELS = ((1.0, 0.25), (0.5, 0.5), (0.25, 0.0))

    def __init__(self, config: DepthProConfig, timm_pretrained: bool = False):
        super().__init__()
        vit = config.vit
        dims = list(vit.feature_dims)
        dec = config.decoder_features
        self.patch_encoder = create_vit(vit, timm_pretrained)
        self.image_encoder = create_vit(vit, timm_pretrained)
        self.hook_block_ids = tuple(vit.hook_block_ids[:2])
        self.patch_size = vit.img_size  # side of one pyramid patch (= backbone input)
        self.grid = vit.grid_size  # tokens per side of one patch
        self.num_prefix = self.patch_encoder.num_prefix_tokens
        self.patch_batch = config.patch_batch
        d = vit.embed_dim

        self.upsample_latent0 = _upsample_block(d, dec, 3, dim_mid=dims[0])
        self.upsample_latent1 = _upsample_block(d, dims[0], 2)
        self.upsample0 = _upsample_block(d, dims[1], 1)
        self.upsample1 = _upsample_block(d, dims[2], 1)
        self.upsample2 = _upsample_block(d, dims[3], 1)
        self.upsample_lowres = nn.ConvTranspose2d(d, dims[3], kernel_size=2, stride=2, bias=True)
        self.fuse_lowres = nn.Conv2d(2 * dims[3], dims[3], kernel_size=1, bias=True)

    # -- geometry --------------------------------------------------------------------------------
    def _steps(self, size: int, overlap: float) -> Tuple[int, int]:
        stride = int(self.patch_size * (1.0 - overlap))
        steps = int(math.ceil((size - self.patch_size) / stride)) + 1
        return steps, stride

    def split(self, x: torch.Tensor, overlap: float) -> torch.Tensor:
        """Sliding-window patches, row-major, patch-major/batch-minor: (steps^2 * B, C, p, p)."""
        steps, stride = self._steps(x.shape[-1], overlap)
        p = self.patch_size
        return torch.cat([x[..., j * stride:j * stride + p, i * stride:i * stride + p]
                          for j in range(steps) for i in range(steps)], dim=0)

    def merge(self, feats: torch.Tensor, batch: int, overlap: float) -> torch.Tensor:
        """Stitch (steps^2 * B, C, g, g) patch features, cropping half the overlap on interior edges."""
        steps = int(round(math.sqrt(feats.shape[0] // batch)))
        if steps == 1:
            return feats
        g = feats.shape[-1]
        crop = int(g * overlap / 2)
        rows = []
        for j in range(steps):
            row = []
            for i in range(steps):
                k = j * steps + i
                t = feats[k * batch:(k + 1) * batch]
                top, bottom = (crop if j > 0 else 0), (g - crop if j < steps - 1 else g)
                left, right = (crop if i > 0 else 0), (g - crop if i < steps - 1 else g)
                row.append(t[..., top:bottom, left:right])
            rows.append(torch.cat(row, dim=-1))
        return torch.cat(rows, dim=-2)

    def pyramid(self, x: torch.Tensor) -> List[torch.Tensor]:
        return [x if s == 1.0 else F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
                for s, _ in self.LEVELS]

    # -- pieces ----------------------------------------------------------------------------------
    def lowres_feature(self, x2_tokens: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Fuse the lowest pyramid level's patch-encoder tokens with the image encoder (S/32 map)."""
        x2_feat = self.upsample2(_tokens_to_grid(x2_tokens, self.num_prefix, self.grid))
        glob = self.image_encoder.forward_features(x2)
        glob = self.upsample_lowres(_tokens_to_grid(glob, self.image_encoder.num_prefix_tokens, self.grid))
        return self.fuse_lowres(torch.cat((x2_feat, glob), dim=1))

    def _patch_encoder_with_hooks(self, patches: torch.Tensor, n_hi: int, batch: int):
        """Run the patch encoder (``patch_batch`` patch positions x ``batch`` images per pass); merge the
        hooked blocks' outputs of the first ``n_hi`` patches at once."""
        vit = self.patch_encoder
        positions = patches.shape[0] // batch
        step = self.patch_batch if 0 < self.patch_batch < positions else positions
        outs: List[torch.Tensor] = []
        taps: Tuple[List[torch.Tensor], List[torch.Tensor]] = ([], [])
        for start in range(0, positions, step):
            x = patches if step == positions else patches[start * batch:min(start + step, positions) * batch]
            x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))
            for i, blk in enumerate(vit.blocks):
                x = blk(x)
                if i in self.hook_block_ids:
                    taps[self.hook_block_ids.index(i)].append(x)
            outs.append(vit.norm(x))
        overlap0 = self.LEVELS[0][1]
        hooks = [self.merge(_tokens_to_grid(_cat(t)[:n_hi], self.num_prefix, self.grid), batch, overlap0)
                 for t in taps]
        return _cat(outs), hooks[0], hooks[1]

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        batch = x.shape[0]
        x0, x1, x2 = self.pyramid(x)
        p0 = self.split(x0, self.LEVELS[0][1])
        p1 = self.split(x1, self.LEVELS[1][1])
        n0, n1 = p0.shape[0], p1.shape[0]
        tokens, lat0, lat1 = self._patch_encoder_with_hooks(torch.cat((p0, p1, x2), dim=0), n0, batch)
        t0, t1, t2 = torch.split(tokens, [n0, n1, batch], dim=0)
        f0 = self.merge(_tokens_to_grid(t0, self.num_prefix, self.grid), batch, self.LEVELS[0][1])
        f1 = self.merge(_tokens_to_grid(t1, self.num_prefix, self.grid), batch, self.LEVELS[1][1])
        return [
            self.upsample_latent0(lat0),
            self.upsample_latent1(lat1),
            self.upsample0(f0),
            self.upsample1(f1),
            self.lowres_feature(t2, x2),
        ]


# ---------------------------------------------------------------------------------------------
# Decoder, head, FOV
# ---------------------------------------------------------------------------------------------
class ResidualUnit(nn.Module):
    """Pre-activation residual unit: x + conv(relu(conv(relu(x)))) (``residual.{1,3}`` convs)."""

    def __init__(self, ch: int):
        super().__init__()
        self.residual = nn.Sequential(nn.ReLU(False), nn.Conv2d(ch, ch, 3, padding=1),
                                      nn.ReLU(False), nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual(x)


class FusionBlock(nn.Module):
    """DPT fusion: (x + resnet1(skip)) -> resnet2 -> [2x transposed conv] -> 1x1 conv."""

    def __init__(self, ch: int, deconv: bool):
        super().__init__()
        self.resnet1 = ResidualUnit(ch)
        self.resnet2 = ResidualUnit(ch)
        self.deconv = nn.ConvTranspose2d(ch, ch, kernel_size=2, stride=2, bias=False) if deconv else None
        self.out_conv = nn.Conv2d(ch, ch, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor, skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resnet1(skip)
        x = self.resnet2(x)
        if self.deconv is not None:
            x = self.deconv(x)
        return self.out_conv(x)


class MultiresDecoder(nn.Module):
    """Projects the 5 encoder maps to ``dim`` channels and fuses them from coarse to fine."""

    def __init__(self, dims_in: Sequence[int], dim: int):
        super().__init__()
        convs: List[nn.Module] = [nn.Identity() if dims_in[0] == dim else nn.Conv2d(dims_in[0], dim, 1, bias=False)]
        convs += [nn.Conv2d(c, dim, 3, padding=1, bias=False) for c in dims_in[1:]]
        self.convs = nn.ModuleList(convs)
        self.fusions = nn.ModuleList([FusionBlock(dim, deconv=i != 0) for i in range(len(dims_in))])
        self.dim = dim

    def project_lowres(self, feat: torch.Tensor) -> torch.Tensor:
        return self.convs[-1](feat)

    def forward(self, encodings: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        lowres = self.project_lowres(encodings[-1])
        x = self.fusions[-1](lowres)
        for i in range(len(encodings) - 2, -1, -1):
            x = self.fusions[i](x, self.convs[i](encodings[i]))
        return x, lowres


class FOVNetwork(nn.Module):
    """Horizontal field of view (degrees) from the S/4 image and the detached low-res decoder feature."""

    def __init__(self, config: DepthProConfig, timm_pretrained: bool = False):
        super().__init__()
        dec = config.decoder_features
        vit = config.vit
        self.encoder = nn.Sequential(create_vit(vit, timm_pretrained), nn.Linear(vit.embed_dim, dec // 2))
        self.downsample = nn.Sequential(nn.Conv2d(dec, dec // 2, 3, stride=2, padding=1), nn.ReLU(True))
        g = vit.grid_size
        for _ in range(2):  # spatial size after the two stride-2 convs below
            g = (g - 1) // 2 + 1
        self.head = nn.Sequential(
            nn.Conv2d(dec // 2, dec // 4, 3, stride=2, padding=1), nn.ReLU(True),
            nn.Conv2d(dec // 4, dec // 8, 3, stride=2, padding=1), nn.ReLU(True),
            nn.Conv2d(dec // 8, 1, kernel_size=g),
        )

    def forward(self, x_lowres: torch.Tensor, lowres_feature: torch.Tensor) -> torch.Tensor:
        """x_lowres: the input image at S/4 (backbone size); lowres_feature: (B, dec, 2g, 2g)."""
        vit, linear = self.encoder
        # the ViT runs in the network's dtype; from its tokens on, the parts named in FP32_MODULES run in
        # the dtype of their own weights (float32 after ``DepthProNet.set_precision``)
        tokens = linear(vit.forward_features(x_lowres).to(linear.weight.dtype))[:, vit.num_prefix_tokens:]
        feat = self.downsample(lowres_feature.to(self.downsample[0].weight.dtype))
        feat = tokens.transpose(1, 2).reshape(feat.shape).to(feat.dtype) + feat
        return self.head(feat.to(self.head[0].weight.dtype))


def upsampling_head(x: torch.Tensor, w_up: torch.Tensor, b_up: torch.Tensor, w3: torch.Tensor, b3: torch.Tensor,
                    w1: torch.Tensor, b1: torch.Tensor) -> torch.Tensor:
    """``relu(conv1x1(relu(conv3x3(deconv2x2_stride2(x)))))``, the end of Depth Pro's head, computed at the
    input's resolution: the same numbers up to float rounding, 2.7x (released decoder) to 4.7x (ViT-S
    preset) fewer operations, and no full-resolution intermediate.

    Each output pixel (2i + a, 2j + b) sees, through the 3x3 convolution, deconvolution outputs that come
    from input rows {i - 1, i} (a = 0) or {i, i + 1} (a = 1), and likewise for columns. So one 2x2
    convolution over the zero-padded input gives, for each of the four phases (a, b), the 3x3 conv's
    output at window (i + a, j + b); its kernel is the product of the 3x3 and 2x2 kernels. The
    deconvolution's bias reaches only pixels inside the image (zero padding of its output), hence a
    constant-one input channel that carries it and is zero in the padding. ReLU and the 1x1 convolution act
    per pixel, so they run per phase before the phases are interleaved (pixel shuffle).

    Shapes: x (B, C, H, W); w_up (C, M, 2, 2), b_up (M,) (ConvTranspose2d); w3 (O, M, 3, 3), b3 (O,); w1 (P, O,
    1, 1), b1 (P,); returns (B, P, 2H, 2W).
    """
    return apply_folded_head(x, fold_upsampling_head(w_up, b_up, w3, b3, w1, b1))


#: the folded head's weights: (kernel (4 O, C + 1, 2, 2), bias (4 O,), 1x1 weight (4 P, O, 1, 1), its bias (4 P,))
FoldedHead = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def fold_upsampling_head(w_up: torch.Tensor, b_up: torch.Tensor, w3: torch.Tensor, b3: torch.Tensor,
                         w1: torch.Tensor, b1: torch.Tensor) -> FoldedHead:
    """The weights ``upsampling_head`` runs with (see there), from the layers' weights: they depend on the
    weights only, so a graph export computes them once (``DepthProNet.head_folded_once``)."""
    # every product of a 3x3 tap (u, v) with a 2x2 deconv tap (alpha, beta), the deconv bias as channel C
    taps = torch.cat((torch.einsum("omuv,cmab->uvaboc", w3, w_up),
                      torch.einsum("omuv,m->uvo", w3, b_up)[:, :, None, None, :, None].expand(-1, -1, 2, 2, -1, 1)),
                     dim=-1)                                                        # (3, 3, 2, 2, O, C + 1)
    kernels = []
    for a in (0, 1):
        for b in (0, 1):
            window = {}                       # 2x2 window position -> (O, C + 1) kernel slice
            for u in (-1, 0, 1):
                for v in (-1, 0, 1):
                    # deconv output row 2i + a + u = 2r + alpha: input row r = i + dr, kernel row alpha
                    dr, alpha = divmod(a + u, 2)
                    dc, beta = divmod(b + v, 2)
                    part = taps[u + 1, v + 1, alpha, beta]
                    key = (dr - a + 1, dc - b + 1)
                    window[key] = window[key] + part if key in window else part
            kernels.append(torch.stack([torch.stack([window[(kr, kc)] for kc in (0, 1)], dim=-1)
                                        for kr in (0, 1)], dim=-2))                # (O, C + 1, 2, 2)
    return torch.cat(kernels, dim=0), b3.repeat(4), w1.repeat(4, 1, 1, 1), b1.repeat(4)


def apply_folded_head(x: torch.Tensor, folded: FoldedHead) -> torch.Tensor:
    """``upsampling_head`` on x (B, C, H, W) with weights from ``fold_upsampling_head``: (B, P, 2H, 2W)."""
    kernel, bias, w1, b1 = folded
    p = w1.shape[0] // 4
    h, w = x.shape[-2:]
    ones = torch.ones_like(x[:, :1])
    y = F.conv2d(torch.cat((x, ones), dim=1), kernel, bias, padding=1)
    y = F.relu(F.conv2d(F.relu(y), w1, b1, groups=4))                                # (B, 4P, H + 1, W + 1)
    phases = [y[:, (2 * a + b) * p:(2 * a + b + 1) * p, a:a + h, b:b + w] for a in (0, 1) for b in (0, 1)]
    return F.pixel_shuffle(torch.stack(phases, dim=2).flatten(1, 2), 2)


class DepthProNet(nn.Module):
    """The Depth Pro network. ``forward(x)`` -> ``(canonical_inverse_depth, fov_deg)`` like the official
    ``DepthPro.forward``: x is B x 3 x S x S in [-1, 1] (S = ``img_size``, 1536 released);
    C is B x 1 x S' x S' (S' = S for patch-16 presets); fov_deg is B x 1 x 1 x 1 or None."""

    def __init__(self, config: DepthProConfig = DepthProConfig(), timm_pretrained: bool = False):
        super().__init__()
        self.config = config
        dec = config.decoder_features
        self.encoder = DepthProEncoder(config, timm_pretrained)
        self.decoder = MultiresDecoder([dec] + list(config.vit.feature_dims), dec)
        d0, d1 = config.last_dims
        self.head = nn.Sequential(
            nn.Conv2d(dec, dec // 2, 3, padding=1),
            nn.ConvTranspose2d(dec // 2, dec // 2, kernel_size=2, stride=2, bias=True),
            nn.Conv2d(dec // 2, d0, 3, padding=1),
            nn.ReLU(True),
            nn.Conv2d(d0, d1, 1),
            nn.ReLU(),
        )
        self.fov = FOVNetwork(config, timm_pretrained) if config.use_fov else None
        self._head_constants: Optional[FoldedHead] = None     # set by head_folded_once only
        # Random init only (every checkpoint overwrites these): the official code starts the last head
        # bias at 0, which with random weights leaves C = 0 (depth 1e4 m) almost everywhere. Start it at
        # 0.1 (about 9 m at a 60 deg FOV) and the FOV output at 60 deg, so that random-weight networks
        # (tests, benchmarks) give plausible, non-degenerate depth and focal lengths.
        with torch.no_grad():
            self.head[4].bias.fill_(RANDOM_INIT_INVERSE_DEPTH)
            if self.fov is not None:
                self.fov.head[-1].bias.fill_(FOV_FALLBACK_DEG)

    @property
    def img_size(self) -> int:
        return self.config.img_size

    def set_precision(self, dtype: Union[str, torch.dtype]) -> "DepthProNet":
        """Cast the network to ``dtype`` except the parts named in ``FP32_MODULES``, which stay float32.

        Those are cheap next to the ViTs but set the output precision: in bfloat16 the FOV head would
        round the field of view to 0.25 deg steps near 60 deg (the input-dependent part of the estimate
        is lost, and every metric depth is rescaled by it), and the last head convolutions would round
        the canonical inverse depth to 8 significant bits.
        """
        dt = resolve_dtype(dtype)
        self.to(dt)
        if dt != torch.float32:
            for name in FP32_MODULES:
                if self.fov is None and name.startswith("fov."):
                    continue
                self.get_submodule(name).float()
        return self

    def _fold_head(self) -> FoldedHead:
        c2, c4 = self.head[2], self.head[4]
        dt = c2.weight.dtype
        return fold_upsampling_head(self.head[1].weight.to(dt), self.head[1].bias.to(dt), c2.weight, c2.bias,
                                    c4.weight, c4.bias)

    @contextlib.contextmanager
    def head_folded_once(self):
        """Within this block the head's folded weights (``fold_upsampling_head``) are computed once, from
        the parameters as they are on entry, instead of in every forward. The exporter traces the forward
        in this block, so that they are constants of the graph: each convolution then has constant
        weights (what TensorRT builds its kernels from) instead of some 150 nodes computing them."""
        with torch.no_grad():
            self._head_constants = self._fold_head()
        try:
            yield self
        finally:
            self._head_constants = None

    def _run_head(self, features: torch.Tensor) -> torch.Tensor:
        """Canonical inverse depth from the decoder features: ``head`` (conv 3x3, deconv 2x2 / 2, conv 3x3,
        ReLU, conv 1x1, ReLU) computed as ``upsampling_head`` does, from the deconvolution on in float32."""
        x = self.head[0](features)
        folded = self._head_constants if self._head_constants is not None else self._fold_head()
        return apply_folded_head(x.to(folded[0].dtype), folded)

    def _check_input(self, x: torch.Tensor) -> None:
        s = self.img_size
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2] != s or x.shape[-1] != s:
            raise ValueError(f"Depth Pro expects a B x 3 x {s} x {s} input, got {tuple(x.shape)}")

    def _lowres_image(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=0.25, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor, compute_fov: bool = True) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``compute_fov=False`` skips the FOV branch (returns None), e.g. when f_px is known."""
        self._check_input(x)
        features, lowres = self.decoder(self.encoder(x))
        inverse_depth = self._run_head(features)
        fov_deg = None
        if compute_fov and self.fov is not None:
            fov_deg = self.fov(self._lowres_image(x), lowres.detach())
        return inverse_depth, fov_deg

    def forward_fov(self, x: torch.Tensor) -> torch.Tensor:
        """FOV (degrees, B x 1 x 1 x 1) computing only what the FOV head needs: image encoder, patch
        encoder on the single S/4 patch, the low-resolution fusion/projection and the FOV network
        (3 ViT passes instead of 37). Equal to ``forward(x)[1]`` up to floating-point reordering."""
        if self.fov is None:
            raise ValueError("this Depth Pro network was built with use_fov=False: it has no FOV head")
        self._check_input(x)
        x2 = self._lowres_image(x)
        tokens = self.encoder.patch_encoder.forward_features(x2)
        lowres = self.decoder.project_lowres(self.encoder.lowres_feature(tokens, x2))
        return self.fov(x2, lowres.detach())


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------
_HF_VIT_PREFIXES = {
    "depth_pro.encoder.patch_encoder.model.": "encoder.patch_encoder.",
    "depth_pro.encoder.image_encoder.model.": "encoder.image_encoder.",
    "fov_model.fov_encoder.model.": "fov.encoder.0.",
}
_HF_QKV = re.compile(r"^encoder\.layer\.(\d+)\.attention\.(?:attention\.)?(q_proj|k_proj|v_proj|query|key|value)"
                     r"\.(weight|bias)$")
_HF_VIT_RULES = [
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.patch_embeddings\.projection\.(weight|bias)$", r"patch_embed.proj.\1"),
    (r"^encoder\.layer\.(\d+)\.norm([12])\.(weight|bias)$", r"blocks.\1.norm\2.\3"),
    (r"^encoder\.layer\.(\d+)\.attention\.(?:o_proj|output\.dense)\.(weight|bias)$", r"blocks.\1.attn.proj.\2"),
    (r"^encoder\.layer\.(\d+)\.layer_scale([12])\.lambda1$", r"blocks.\1.ls\2.gamma"),
    (r"^encoder\.layer\.(\d+)\.mlp\.(fc[12])\.(weight|bias)$", r"blocks.\1.mlp.\2.\3"),
    (r"^layernorm\.(weight|bias)$", r"norm.\1"),
]
_HF_FUSION_INNER = [
    (r"^residual_layer([12])\.convolution1\.(.+)$", r"resnet\1.residual.1.\2"),
    (r"^residual_layer([12])\.convolution2\.(.+)$", r"resnet\1.residual.3.\2"),
    (r"^projection\.(.+)$", r"out_conv.\1"),
    (r"^deconv\.(.+)$", r"deconv.\1"),
]


def _apply_rules(rules, key: str) -> Optional[str]:
    for pat, rep in rules:
        if re.match(pat, key):
            return re.sub(pat, rep, key)
    return None


def _hf_fusion_key(m, n_levels: int) -> Optional[str]:
    level = 0 if m[1] == "final" else n_levels - 1 - int(m[2])
    inner = _apply_rules(_HF_FUSION_INNER, m[3])
    return None if inner is None else f"decoder.fusions.{level}.{inner}"


# Hugging Face names outside the ViTs -> ours: (pattern, function(match, n_levels) -> our key or None).
# HF numbers the upsampling and fusion levels the other way round.
_HF_OTHER_RULES = [
    (r"^depth_pro\.neck\.fuse_image_with_low_res\.(.+)$", lambda m, n: f"encoder.fuse_lowres.{m[1]}"),
    (r"^depth_pro\.neck\.feature_upsample\.image_block\.layers\.0\.(.+)$",
     lambda m, n: f"encoder.upsample_lowres.{m[1]}"),
    (r"^depth_pro\.neck\.feature_upsample\.intermediate\.(\d+)\.layers\.(\d+)\.(.+)$",
     lambda m, n: f"encoder.upsample_latent{1 - int(m[1])}.{m[2]}.{m[3]}"),
    (r"^depth_pro\.neck\.feature_upsample\.scaled_images\.(\d+)\.layers\.(\d+)\.(.+)$",
     lambda m, n: f"encoder.upsample{2 - int(m[1])}.{m[2]}.{m[3]}"),
    (r"^depth_pro\.neck\.feature_projection\.projections\.(\d+)\.(.+)$",
     lambda m, n: f"decoder.convs.{n - 1 - int(m[1])}.{m[2]}"),
    (r"^fusion_stage\.(final|intermediate\.(\d+))\.(.+)$", _hf_fusion_key),
    (r"^head\.layers\.(\d+)\.(.+)$", lambda m, n: f"head.{m[1]}.{m[2]}"),
    (r"^fov_model\.fov_encoder\.neck\.(.+)$", lambda m, n: f"fov.encoder.1.{m[1]}"),
    (r"^fov_model\.conv\.(.+)$", lambda m, n: f"fov.downsample.0.{m[1]}"),
    (r"^fov_model\.head\.layers\.(\d+)\.(.+)$", lambda m, n: f"fov.head.{m[1]}.{m[2]}"),
]


def _hf_other_key(key: str, n_levels: int = 5) -> Optional[str]:
    for pattern, to_ours in _HF_OTHER_RULES:
        m = re.match(pattern, key)
        if m:
            return to_ours(m, n_levels)
    return None


def is_hf_state_dict(state_dict: Dict[str, torch.Tensor]) -> bool:
    return any(k.startswith(("depth_pro.", "fusion_stage.", "fov_model.")) for k in state_dict)


def convert_hf_state_dict(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """transformers ``DepthProForDepthEstimation`` names -> official/depth_ros names.

    Handles transformers 5.x names (``attention.{q,k,v,o}_proj``) and the older hub names
    (``attention.attention.{query,key,value}``, ``attention.output.dense``); separate q/k/v are
    concatenated into timm's fused ``qkv``. The DINOv2 ``mask_token`` (unused) is dropped. Keys that
    match no rule are kept unchanged so that strict loading reports them.
    """
    out: Dict[str, torch.Tensor] = {}
    qkv: Dict[Tuple[str, str, str], Dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        prefix = next((p for p in _HF_VIT_PREFIXES if key.startswith(p)), None)
        if prefix is not None:
            rest = key[len(prefix):]
            ours = _HF_VIT_PREFIXES[prefix]
            if rest == "embeddings.mask_token":
                continue
            m = _HF_QKV.match(rest)
            if m:
                qkv.setdefault((ours, m[1], m[3]), {})[m[2][0]] = value
                continue
            new = _apply_rules(_HF_VIT_RULES, rest)
            out[ours + new if new is not None else key] = value
            continue
        new = _hf_other_key(key)
        out[new if new is not None else key] = value
    for (ours, layer, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise WeightsError(f"Hugging Face checkpoint: layer {ours}blocks.{layer} has only "
                               f"{sorted(parts)} of the q/k/v attention {kind}s")
        out[f"{ours}blocks.{layer}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], net: DepthProNet) -> Dict[str, torch.Tensor]:
    """Adapt a checkpoint to ``net``: HF layout -> ours, and drop ``fov.*`` when the net has no FOV
    network (``use_fov=False``; on purpose, to save the FOV encoder). fp16 tensors are cast to the
    parameters' dtype by ``load_state_dict``'s copy."""
    if is_hf_state_dict(state_dict):
        state_dict = convert_hf_state_dict(state_dict)
    if net.fov is None:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("fov.")}
    return state_dict


def load_depth_pro_weights(net: DepthProNet, path, source: Optional[str] = None) -> None:
    sd = checkpoint_filter_fn(load_state_dict(path), net)
    load_strict(net, sd, source=source or f"Depth Pro checkpoint '{path}'")


def hf_config(config: DepthProConfig):
    """An equivalent transformers ``DepthProConfig`` (for parity tests and benchmarks).

    transformers ties the latent feature widths to the decoder width, so this needs
    ``feature_dims[0] == decoder_features`` (true for the released model and ``test_tiny`` with 16).
    """
    from transformers import DepthProConfig as HFDepthProConfig

    vit = config.vit
    dims = vit.feature_dims
    if dims[0] != config.decoder_features:
        raise ValueError("transformers' Depth Pro needs feature_dims[0] == decoder_features "
                         f"({dims[0]} != {config.decoder_features})")
    bb = {"model_type": "dinov2", "num_hidden_layers": vit.depth, "hidden_size": vit.embed_dim,
          "num_attention_heads": vit.num_heads, "patch_size": vit.patch_size, "image_size": vit.img_size,
          "use_mask_token": False}
    return HFDepthProConfig(
        patch_size=vit.img_size, fusion_hidden_size=config.decoder_features,
        merge_padding_value=vit.grid_size // 8,  # 25 % overlap crop at scale 1 (3 released)
        intermediate_hook_ids=[vit.hook_block_ids[1], vit.hook_block_ids[0]],
        intermediate_feature_dims=[dims[0], config.decoder_features],
        scaled_images_ratios=[0.25, 0.5, 1.0], scaled_images_overlap_ratios=[0.0, 0.5, 0.25],
        scaled_images_feature_dims=[dims[3], dims[2], dims[1]],
        image_model_config=dict(bb), patch_model_config=dict(bb), fov_model_config=dict(bb),
        use_fov_model=config.use_fov)


# ---------------------------------------------------------------------------------------------
# Metric conversion and the DepthModel wrapper
# ---------------------------------------------------------------------------------------------
def fov_to_focal(fov_deg: Union[float, torch.Tensor], width: int) -> float:
    """Horizontal FOV (degrees) -> focal length in pixels for an image ``width`` pixels wide:
    ``0.5 * W / tan(fov / 2)``, with the FOV clamped to ``FOV_RANGE_DEG`` (non-finite -> 60 deg)."""
    if isinstance(fov_deg, torch.Tensor):
        fov_deg = fov_deg.detach().float().reshape(-1)[0].item()
    fov = float(fov_deg)
    if not math.isfinite(fov):
        fov = FOV_FALLBACK_DEG
    fov = min(max(fov, FOV_RANGE_DEG[0]), FOV_RANGE_DEG[1])
    return focal_from_hfov(width, fov)


class DepthPro(DepthModel):
    """Depth Pro as a ``DepthModel``: ``infer(rgb, f_px=None)`` -> metric depth at the input size.

    The image is normalised to [-1, 1] and squashed to S x S (bilinear, no antialias; aspect ratio not
    kept, as in the official code). ``f_px`` (pixels, for this image's width) replaces the estimated
    focal length and then skips the FOV branch; it may be a Python number, numpy scalar or tensor.
    ``confidence="flip"`` (``CONFIDENCE_MODES``) also runs the mirror image in the same batch: the depth stays
    the un-mirrored prediction (a mean of two silhouettes that disagree would itself make flying pixels) and
    ``DepthPrediction.confidence = exp(-ln2 * s / 0.1)``, s the symmetric relative difference of the two.
    """

    name = "depth_pro"

    def __init__(self, net: DepthProNet, device="cpu", dtype="float32", compile: Union[bool, str] = False,
                 confidence: str = "flip"):
        if confidence not in CONFIDENCE_MODES:
            raise ValueError(f"Depth Pro confidence must be one of {', '.join(CONFIDENCE_MODES)}, got {confidence!r}")
        super().__init__(net=None, device=device, dtype=dtype)
        self.confidence_mode = confidence
        self.config = net.config
        self.net = net.to(device=self.device).set_precision(self.dtype).eval()
        self.capabilities = Capabilities(estimates_focal=net.fov is not None, confidence=confidence != "none")
        self._forward = self.net
        self._forward_fov = self.net.forward_fov
        if compile:
            mode = compile if isinstance(compile, str) else None
            self._forward = torch.compile(self.net, mode=mode)
            self._forward_fov = torch.compile(self.net.forward_fov, mode=mode)

    @property
    def img_size(self) -> int:
        return self.config.img_size

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """H x W x 3 uint8 RGB -> 1 x 3 x S x S in [-1, 1], model dtype, on the model's device."""
        x = rgb_to_tensor(check_rgb(rgb), self.device).mul_(2.0).sub_(1.0)
        s = self.img_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=False)
        return x.to(self.dtype)

    def infer(self, rgb: np.ndarray, f_px: FocalLike = None) -> DepthPrediction:
        check_rgb(rgb)
        focal = focal_to_float(f_px)
        if focal is None and not self.capabilities.estimates_focal:
            raise ValueError("Depth Pro was built with use_fov=False: pass f_px (focal length in pixels)")
        h, w = rgb.shape[:2]
        x = self.preprocess(rgb)
        flip = self.confidence_mode == "flip"
        with torch.inference_mode():
            if flip:  # the image and its mirror as one batch of 2 (the FOV and the depth come from item 0)
                x = torch.cat([x, x.flip(-1)])
            canonical, fov_deg = self._forward(x, compute_fov=focal is None)
            source = "given"
            if focal is None:
                focal, source = fov_to_focal(fov_deg, w), "estimated"
            inverse = canonical.float() * (w / focal)
            if inverse.shape[-2:] != (h, w):
                inverse = F.interpolate(inverse, size=(h, w), mode="bilinear", align_corners=False)
            # official clamp; a NaN (only from a broken network, e.g. fp16 overflow) becomes the far limit
            inverse = torch.nan_to_num_(inverse, nan=INVERSE_DEPTH_RANGE[0])
            depth = 1.0 / inverse.clamp_(*INVERSE_DEPTH_RANGE)
            depth = depth[0, 0].cpu().numpy().astype(np.float32, copy=False)
            conf = None
            if flip:  # s(1/a, 1/b) == s(a, b): the disagreement of the two clamped inverse depths is the depths'
                conf = flip_confidence_torch(inverse[0, 0], inverse[1, 0].flip(-1)).cpu().numpy()
        return DepthPrediction(depth=depth, confidence=conf, focal_px=float(focal), focal_source=source)

    def estimate_focal(self, rgb: np.ndarray) -> float:
        """Focal length in pixels for this image's width, from the FOV head only (~3 ViT passes)."""
        if not self.capabilities.estimates_focal:
            raise ValueError("Depth Pro was built with use_fov=False: it cannot estimate the focal length")
        x = self.preprocess(rgb)
        with torch.inference_mode():
            fov_deg = self._forward_fov(x)
        return fov_to_focal(fov_deg, rgb.shape[1])

    def estimate_fov(self, rgb: np.ndarray) -> float:
        """Raw predicted horizontal FOV in degrees (unclamped)."""
        if not self.capabilities.estimates_focal:
            raise ValueError("Depth Pro was built with use_fov=False: it has no FOV head")
        x = self.preprocess(rgb)
        with torch.inference_mode():
            return float(self._forward_fov(x).float().reshape(-1)[0])


# ---------------------------------------------------------------------------------------------
# Factories
# ---------------------------------------------------------------------------------------------
def create_depth_pro_net(config: DepthProConfig, weights=None, device: Union[str, torch.device] = "cpu",
                         dtype: Union[str, torch.dtype] = "float32", allow_download: bool = True,
                         timm_pretrained: bool = False) -> DepthProNet:
    """Build a ``DepthProNet`` on ``device``/``dtype``.

    weights: ``"random"`` (random init; with ``timm_pretrained`` the three ViTs start from timm's DINOv2
    weights, re-cut to patch 16 / 384), or a checkpoint path / None (cache, then download; see
    ``depth_ros.models.weights``). A checkpoint is loaded strictly into a network allocated without
    initialisation (built on the meta device), so no time is spent on random init.
    """
    dev = resolve_device(device)
    dt = resolve_dtype(dtype)
    if isinstance(weights, str) and weights == "random":
        with dev:  # initialise directly on the target device (fast on CUDA)
            net = DepthProNet(config, timm_pretrained=timm_pretrained)
        return net.to(device=dev).set_precision(dt).eval()
    path = resolve_weights(weights, DEPTH_PRO_WEIGHTS, allow_download=allow_download)
    with torch.device("meta"):
        net = DepthProNet(config)
    net = net.to_empty(device=dev).set_precision(dt)
    load_depth_pro_weights(net, path)
    return net.eval()


@register_model("depth_pro")
def depth_pro(weights=None, device="auto", dtype="float32", vit_preset="dinov2l16_384", decoder_features=256,
              use_fov=True, compile=False, allow_download=True, timm_pretrained=False,
              confidence="flip", patch_batch=0) -> DepthPro:
    """``create_model("depth_pro", ...)``: see ``DepthPro`` and ``create_depth_pro_net``.

    vit_preset: ``dinov2l16_384`` (released weights), ``dinov2b16_384``, ``dinov2s16_384`` or
    ``test_tiny`` (random-weights unit tests: 128 x 128 network input).
    compile: ``torch.compile`` the network (True, or a mode string such as ``"max-autotune"``).
    confidence: ``"flip"`` (default: flip-consistency confidence, twice the network work) or ``"none"``
      (see ``CONFIDENCE_MODES``).
    patch_batch: pyramid patches per patch-encoder pass (``DepthProConfig.patch_batch``; 0: all at once).
    """
    if confidence not in CONFIDENCE_MODES:
        raise ValueError(f"Depth Pro confidence must be one of {', '.join(CONFIDENCE_MODES)}, got {confidence!r}")
    config = DepthProConfig(vit_preset=vit_preset, decoder_features=int(decoder_features), use_fov=bool(use_fov),
                            patch_batch=patch_batch)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype)
    if dev.type == "cpu" and dt == torch.float16:
        warnings.warn("Depth Pro in float16 on CPU is slow or unsupported; use float32 or bfloat16", stacklevel=2)
    net = create_depth_pro_net(config, weights=weights, device=dev, dtype=dt, allow_download=allow_download,
                               timm_pretrained=timm_pretrained)
    return DepthPro(net, device=dev, dtype=dt, compile=compile, confidence=confidence)
