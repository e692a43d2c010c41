"""MiDaS v3.1 DPT network with a BEiT encoder, written against current timm (no torch.hub, no monkey patching).

The module tree reproduces the MiDaS parameter names (``pretrained.model.*`` = the timm BEiT,
``pretrained.act_postprocess{1..4}``, ``scratch.*``) so that MiDaS / ZoeDepth checkpoints load without
renaming. The forward pass is our own:

* the encoder runs the timm BEiT blocks with our attention: one fused qkv projection (q/v biases,
  zero k bias), ``F.scaled_dot_product_attention`` with the relative-position bias as the additive mask;
* input sizes other than the 24x24-patch training window keep the trained ``(2*24-1)^2 + 3`` row
  tables and resample them per input size the way MiDaS does: the ``47 x 47`` part is resized
  bilinearly (``align_corners=False``) to ``(2h-1) x (2w-1)`` and the three cls rows are appended.
  timm's own ``set_input_size`` resamples differently and does not reproduce the MiDaS/ZoeDepth numbers;
* the readout token is handled with MiDaS' "project" rule (concatenate cls, Linear + GELU);
* reassembly and RefineNet-style fusion (width 256) follow MiDaS v3.1 exactly, including the
  bilinear ``align_corners=True`` resampling to the next level's size.

``BeitDPT.forward`` returns every decoder tap ZoeDepth needs (see ``DPTFeatures``).
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

# Backbone presets. ``timm`` names a registered timm model; ``timm_kwargs`` builds a tiny BEiT directly.
BACKBONES: Dict[str, dict] = {
    "beitl16_384": dict(timm="beit_large_patch16_384", hooks=(5, 11, 17, 23), features=(256, 512, 1024, 1024),
                        width=256, head_features=32),
    "beitb16_384": dict(timm="beit_base_patch16_384", hooks=(2, 5, 8, 11), features=(96, 192, 384, 768),
                        width=256, head_features=32),
    # A tiny random configuration for tests (about 0.9 M parameters; 64x64 training window of 4x4 patches).
    "test_tiny": dict(timm_kwargs=dict(img_size=64, patch_size=16, embed_dim=32, depth=4, num_heads=4, mlp_ratio=2.0,
                                       use_abs_pos_emb=False, use_rel_pos_bias=True, init_values=0.1),
                      hooks=(0, 1, 2, 3), features=(16, 32, 64, 64), width=32, head_features=8),
}


def make_beit(backbone: str) -> nn.Module:
    """Create the (randomly initialised) timm BEiT for a preset, without its ImageNet classifier."""
    import timm
    from timm.models.beit import Beit

    spec = BACKBONES[backbone]
    if "timm" in spec:
        model = timm.create_model(spec["timm"], pretrained=False, num_classes=0)
    else:
        model = Beit(num_classes=0, **spec["timm_kwargs"])
    # The dense predictor never uses the classifier path (fc_norm + head); official checkpoints carry them
    # and the ZoeDepth checkpoint filter drops them.
    model.fc_norm = nn.Identity()
    model.head = nn.Identity()
    if not hasattr(model, "blocks") or not hasattr(model.blocks[0].attn, "relative_position_bias_table"):
        raise RuntimeError("unsupported timm BEiT layout (expected blocks[i].attn.relative_position_bias_table)")
    return model


def relative_position_index(h: int, w: int, device=None) -> torch.Tensor:
    """(h*w+1) x (h*w+1) index into a ((2h-1)*(2w-1)+3)-row BEiT relative-position table.

    Patch pairs index the (dy, dx) offset, row-major over a (2h-1) x (2w-1) grid; the last three rows
    are cls->patch, patch->cls and cls->cls.
    """
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    dy = ys[:, None] - ys[None, :] + (h - 1)
    dx = xs[:, None] - xs[None, :] + (w - 1)
    n_grid = (2 * h - 1) * (2 * w - 1)
    index = torch.empty(h * w + 1, h * w + 1, dtype=torch.long, device=device)
    index[1:, 1:] = dy * (2 * w - 1) + dx
    index[0, :] = n_grid
    index[:, 0] = n_grid + 1
    index[0, 0] = n_grid + 2
    return index


def resample_rel_pos_table(table: torch.Tensor, train_window: Tuple[int, int], h: int, w: int) -> torch.Tensor:
    """Resize a trained relative-position table to an h x w patch window (MiDaS rule, see module docstring)."""
    th, tw = 2 * train_window[0] - 1, 2 * train_window[1] - 1
    grid = table[: th * tw].reshape(1, th, tw, -1).permute(0, 3, 1, 2)
    if (2 * h - 1, 2 * w - 1) != (th, tw):
        grid = F.interpolate(grid, size=(2 * h - 1, 2 * w - 1), mode="bilinear", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape((2 * h - 1) * (2 * w - 1), -1)
    return torch.cat([grid, table[th * tw:]], dim=0)


class ProjectReadout(nn.Module):
    """MiDaS "project" readout: concatenate the cls token to every patch token, Linear(2C->C) + GELU."""

    def __init__(self, dim: int):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, 1:]
        cls = tokens[:, :1].expand(-1, patches.shape[1], -1)
        return self.project(torch.cat([patches, cls], dim=-1))


class ResidualConvUnit(nn.Module):
    """Pre-activation residual unit: x + conv2(relu(conv1(relu(x))))."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """DPT fusion: (previous path + RCU(skip)) -> RCU -> bilinear resize (align_corners=True) -> 1x1 conv."""

    def __init__(self, width: int):
        super().__init__()
        self.out_conv = nn.Conv2d(width, width, 1)
        self.resConfUnit1 = ResidualConvUnit(width)
        self.resConfUnit2 = ResidualConvUnit(width)

    def forward(self, path: torch.Tensor, skip: Optional[torch.Tensor] = None,
                size: Optional[Sequence[int]] = None) -> torch.Tensor:
        if skip is not None:
            path = path + self.resConfUnit1(skip)
        path = self.resConfUnit2(path)
        if size is None:
            path = F.interpolate(path, scale_factor=2.0, mode="bilinear", align_corners=True)
        else:
            path = F.interpolate(path, size=tuple(size), mode="bilinear", align_corners=True)
        return self.out_conv(path)


class Upsample2x(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)


class DPTFeatures(NamedTuple):
    """Decoder taps, for an input of size H x W (multiples of 32)."""

    out_conv: torch.Tensor   # B x head_features x H x W  (ReLU after the second head conv)
    rel_depth: torch.Tensor  # B x 1 x H x W  (MiDaS relative inverse depth, non-negative)
    l4_rn: torch.Tensor      # B x width x H/32 x W/32  (bottleneck)
    r4: torch.Tensor         # B x width x H/16 x W/16
    r3: torch.Tensor         # B x width x H/8 x W/8
    r2: torch.Tensor         # B x width x H/4 x W/4
    r1: torch.Tensor         # B x width x H/2 x W/2


class BeitDPT(nn.Module):
    """MiDaS v3.1 ``DPTDepthModel(backbone=..., readout="project", non_negative=True)``.

    ``forward(x)`` takes a normalised B x 3 x H x W tensor (H, W multiples of 32) and returns ``DPTFeatures``.
    """

    def __init__(self, backbone: str = "beitl16_384"):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone '{backbone}'; known: {', '.join(BACKBONES)}")
        spec = BACKBONES[backbone]
        self.backbone = backbone
        self.hooks = tuple(spec["hooks"])
        feats, width, head_features = spec["features"], spec["width"], spec["head_features"]

        self.pretrained = nn.Module()
        self.pretrained.model = vit = make_beit(backbone)
        dim = vit.embed_dim
        self.patch = int(vit.patch_embed.patch_size[0])
        self.num_heads = vit.blocks[0].attn.num_heads
        self.train_window = tuple(vit.blocks[0].attn.window_size)
        # Index 1 and 2 hold MiDaS' (parameter-free) Transpose/Unflatten; kept as placeholders so that the
        # parameter indices (.0.project, .3, .4) match the checkpoints.
        self.pretrained.act_postprocess1 = nn.Sequential(
            ProjectReadout(dim), nn.Identity(), nn.Identity(), nn.Conv2d(dim, feats[0], 1),
            nn.ConvTranspose2d(feats[0], feats[0], kernel_size=4, stride=4))
        self.pretrained.act_postprocess2 = nn.Sequential(
            ProjectReadout(dim), nn.Identity(), nn.Identity(), nn.Conv2d(dim, feats[1], 1),
            nn.ConvTranspose2d(feats[1], feats[1], kernel_size=2, stride=2))
        self.pretrained.act_postprocess3 = nn.Sequential(
            ProjectReadout(dim), nn.Identity(), nn.Identity(), nn.Conv2d(dim, feats[2], 1))
        self.pretrained.act_postprocess4 = nn.Sequential(
            ProjectReadout(dim), nn.Identity(), nn.Identity(), nn.Conv2d(dim, feats[3], 1),
            nn.Conv2d(feats[3], feats[3], kernel_size=3, stride=2, padding=1))

        self.scratch = nn.Module()
        for i, c in enumerate(feats, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(c, width, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(self.scratch, f"refinenet{i}", FusionBlock(width))
        self.scratch.output_conv = nn.Sequential(
            nn.Conv2d(width, width // 2, 3, padding=1), Upsample2x(),
            nn.Conv2d(width // 2, head_features, 3, padding=1), nn.ReLU(),
            nn.Conv2d(head_features, 1, 1), nn.ReLU(), nn.Identity())
        self.head_features = head_features
        self.width = width

        self._bias_cache: Dict[tuple, List[torch.Tensor]] = {}
        self.cache_biases = True
        self._forward_impl = self._forward_features

    # -- relative position bias ---------------------------------------------------------------
    def clear_cache(self) -> None:
        self._bias_cache.clear()

    @torch.compiler.disable
    def rel_pos_biases(self, gh: int, gw: int, dtype: torch.dtype, device: torch.device) -> List[torch.Tensor]:
        """Per-block attention biases (1 x heads x N x N, N = gh*gw+1) for a gh x gw patch grid.

        Cached per (size, dtype, device) while no gradient is needed (the two most recent sizes); the cache
        is dropped when a table changes (load_state_dict, .to()). Building them costs about as much as a
        few attention layers; the cache holds blocks x heads x N^2 values (BEiT-L at 384x512: 908 MB in
        float32, 454 MB in bfloat16). Set ``cache_biases = False`` to rebuild them on every call instead.
        """
        tables = [blk.attn.relative_position_bias_table for blk in self.pretrained.model.blocks[: self.hooks[-1] + 1]]
        use_cache = self.cache_biases and not (torch.is_grad_enabled() and tables[0].requires_grad)
        # (inference tensors, e.g. a model copied inside inference_mode, have no version counter)
        versions = tuple((t.data_ptr(), 0 if t.is_inference() else t._version) for t in tables)
        key = (gh, gw, dtype, str(device), versions)
        if use_cache and key in self._bias_cache:
            return self._bias_cache[key]
        biases = self.build_rel_pos_biases(gh, gw, dtype, device, pad=device.type == "cuda")
        if use_cache:
            while len(self._bias_cache) >= 2:
                self._bias_cache.pop(next(iter(self._bias_cache)))
            self._bias_cache[key] = biases
        return biases

    def build_rel_pos_biases(self, gh: int, gw: int, dtype: torch.dtype, device: torch.device,
                             pad: bool = False) -> List[torch.Tensor]:
        """The per-block biases of ``rel_pos_biases``, computed from the tables (no cache; traceable, used
        by the ONNX export). ``pad``: pad the key dimension to a multiple of 16 (CUDA) so that fused
        attention kernels take the bias as a strided view instead of copying it into an aligned buffer."""
        tables = [blk.attn.relative_position_bias_table for blk in self.pretrained.model.blocks[: self.hooks[-1] + 1]]
        index = relative_position_index(gh, gw, device=tables[0].device).view(-1)
        n = gh * gw + 1
        n_pad = (n + 15) // 16 * 16 if pad else n
        biases = []
        for table in tables:
            t = resample_rel_pos_table(table, self.train_window, gh, gw)     # rows x heads
            bias = torch.index_select(t.t().contiguous(), 1, index).reshape(1, -1, n, n).to(device=device, dtype=dtype)
            if n_pad != n:
                padded = bias.new_zeros(1, bias.shape[1], n, n_pad)
                padded[..., :n] = bias
                bias = padded[..., :n]
            biases.append(bias)
        return biases

    # -- forward ------------------------------------------------------------------------------
    def compile_features(self, **kwargs) -> None:
        """torch.compile the tensor part of the forward pass (the cached bias lookup stays eager)."""
        self._forward_impl = torch.compile(self._forward_features, **kwargs)

    def forward(self, x: torch.Tensor) -> DPTFeatures:
        b, _, h, w = x.shape
        if h % 32 or w % 32:
            raise ValueError(f"BeitDPT input sides must be multiples of 32, got {h}x{w}")
        gh, gw = h // self.patch, w // self.patch
        dev = x.device.type
        autocast = torch.amp.is_autocast_available(dev) and torch.is_autocast_enabled(dev)
        dtype = torch.get_autocast_dtype(dev) if autocast else x.dtype
        biases = self.rel_pos_biases(gh, gw, dtype, x.device)
        return self._forward_impl(x, biases)

    def _attention(self, attn: nn.Module, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv_bias = None
        if attn.q_bias is not None:
            qkv_bias = torch.cat([attn.q_bias, torch.zeros_like(attn.v_bias), attn.v_bias])
        qkv = F.linear(x, attn.qkv.weight, qkv_bias).view(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias if bias.dtype == q.dtype else bias.to(q.dtype))
        return attn.proj(out.transpose(1, 2).reshape(b, n, c))

    def _encode(self, x: torch.Tensor, biases: List[torch.Tensor]) -> List[torch.Tensor]:
        vit = self.pretrained.model
        tokens = vit.patch_embed.proj(x).flatten(2).transpose(1, 2)
        tokens = vit.patch_embed.norm(tokens)
        tokens = torch.cat([vit.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype), tokens], dim=1)
        taps = []
        for i, blk in enumerate(vit.blocks[: self.hooks[-1] + 1]):
            y = self._attention(blk.attn, blk.norm1(tokens), biases[i])
            tokens = tokens + (y if blk.gamma_1 is None else blk.gamma_1 * y)
            y = blk.mlp(blk.norm2(tokens))
            tokens = tokens + (y if blk.gamma_2 is None else blk.gamma_2 * y)
            if i in self.hooks:
                taps.append(tokens)
        return taps

    def _forward_features(self, x: torch.Tensor, biases: List[torch.Tensor]) -> DPTFeatures:
        b, _, h, w = x.shape
        gh, gw = h // self.patch, w // self.patch
        taps = self._encode(x, biases)
        post = (self.pretrained.act_postprocess1, self.pretrained.act_postprocess2,
                self.pretrained.act_postprocess3, self.pretrained.act_postprocess4)
        maps = []
        for tokens, seq in zip(taps, post):
            t = seq[0](tokens)                                        # B x N x C (cls folded in)
            t = t.transpose(1, 2).reshape(b, t.shape[-1], gh, gw)
            maps.append(seq[3:](t))
        s = self.scratch
        l1, l2, l3, l4 = s.layer1_rn(maps[0]), s.layer2_rn(maps[1]), s.layer3_rn(maps[2]), s.layer4_rn(maps[3])
        r4 = s.refinenet4(l4, size=l3.shape[2:])
        r3 = s.refinenet3(r4, l3, size=l2.shape[2:])
        r2 = s.refinenet2(r3, l2, size=l1.shape[2:])
        r1 = s.refinenet1(r2, l1)
        oc = s.output_conv
        out_conv = oc[3](oc[2](oc[1](oc[0](r1))))
        rel_depth = oc[5](oc[4](out_conv))
        return DPTFeatures(out_conv, rel_depth, l4, r4, r3, r2, r1)

    def _apply(self, fn, *args, **kwargs):  # .to()/.half()/.cuda() invalidate the bias cache
        self._bias_cache = {}
        return super()._apply(fn, *args, **kwargs)
