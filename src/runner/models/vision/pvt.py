"""Pyramid Vision Transformer v1 (Wang et al., ICCV 2021) with a CLS token per stage (MGHFT card, "Model").

timm ships PVT v2 only, so v1 is written here. Four stages; stage ``i`` embeds the previous map with
a strided conv (patch 4, then 2), adds a learned position embedding, and runs ``depths[i]``
transformer blocks whose attention is *spatial-reduction attention* (SRA): keys and values come
from the token map shrunk by a ``sr_ratio x sr_ratio`` strided conv (+ LayerNorm), queries from every
token. PVT v1-small: embed 64/128/320/512, depths 3/4/6/3, heads 1/2/5/8, SR ratios 8/4/2/1, MLP
ratios 8/8/4/4, qkv bias, LayerNorm eps 1e-6.

Stage CLS tokens (``stage_cls``): plain PVT v1 has a CLS token in stage 4 only. MGHFT (its
``--locals 1 1 1 0``) gives stages 1–3 one as well: it is prepended to the stage's tokens, kept out
of the spatial reduction (the reduced keys are ``[cls, SR(patches)]``) and read out as the stage's
global token; the patch tokens alone go on to the next stage. Deviation: the released code adds the
*first patch's* position embedding to a stage-1..3 CLS token; here those CLS tokens get none (a
learned token needs no position), so ``pos_embed1..3`` keep PVT v1's shapes and a PVT v1 checkpoint
loads unchanged.

Weights: ``checkpoint=/path/pvt_small.pth`` (the PVT authors' ImageNet file; local only) is loaded
non-strictly, as the release does (its ImageNet ``head`` is not used; position
embeddings are resized bilinearly when the grid differs, stage CLS tokens 1–3 stay at their init).
``img_size`` fixes the position-embedding grid (224 = the checkpoint's); other input sizes
interpolate it on the fly, as PVT does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_
from torch import nn

from runner.errors import invalid_value
from runner.models.checkpoint import load_local_weights


class Mlp(nn.Module):
    """Transformer feed-forward: Linear -> GELU -> dropout -> Linear -> dropout."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class SpatialReductionAttention(nn.Module):
    """Multi-head attention whose keys/values come from a spatially reduced token map (PVT's SRA).

    ``forward(x, H, W, has_cls, need_weights)``: ``x`` is ``[B, N, C]`` with ``N = H*W`` (+1 if the
    first token is a CLS token, which bypasses the reduction). Returns the output and, when
    ``need_weights``, the attention probabilities ``[B, heads, N, N_k]`` (``N_k = 1 + H'W'`` with a
    CLS token); otherwise PyTorch's fused attention is used and ``None`` is returned.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        sr_ratio: int = 1,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise invalid_value("model.embed_dims", dim, f"divisible by its stage's num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.attn_drop_p = attn_drop
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def reduced_tokens(self, x: torch.Tensor, H: int, W: int, has_cls: bool) -> torch.Tensor:
        """The key/value source: ``x`` itself, or ``[cls, LN(SR(patches))]`` when ``sr_ratio > 1``."""
        if self.sr_ratio == 1:
            return x
        B, _, C = x.shape
        head, patches = (x[:, :1], x[:, 1:]) if has_cls else (x[:, :0], x)
        grid = patches.transpose(1, 2).reshape(B, C, H, W)
        reduced = self.sr(grid).flatten(2).transpose(1, 2)
        return self.norm(torch.cat([head, reduced], dim=1))

    def forward(
        self, x: torch.Tensor, H: int, W: int, has_cls: bool = False, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, N, C = x.shape
        q = self.q(x).reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)
        kv_src = self.reduced_tokens(x, H, W, has_cls)
        kv = self.kv(kv_src).reshape(B, -1, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        if need_weights:
            attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
            out = self.attn_drop(attn) @ v
        else:
            attn = None
            drop = self.attn_drop_p if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        out = out.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(out)), attn


class Block(nn.Module):
    """Pre-norm transformer block with SRA and stochastic depth."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop: float,
        attn_drop: float,
        drop_path: float,
        sr_ratio: int,
        norm_layer,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = SpatialReductionAttention(dim, num_heads, qkv_bias, attn_drop, drop, sr_ratio)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(
        self, x: torch.Tensor, H: int, W: int, has_cls: bool, need_weights: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        out, attn = self.attn(self.norm1(x), H, W, has_cls, need_weights)
        x = x + self.drop_path(out)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, attn


class PatchEmbed(nn.Module):
    """Strided-conv patch embedding + LayerNorm; remembers the grid its position embedding is for."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.H = self.W = img_size // patch_size
        self.num_patches = self.H * self.W
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        H, W = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), H, W


@dataclass
class StageOutput:
    """What one stage produced: its tokens (``[B, 1 + H*W, C]`` with the CLS token first when the
    stage has one), the grid, and each block's attention probabilities when they were asked for."""

    tokens: torch.Tensor
    H: int
    W: int
    has_cls: bool
    attentions: list[torch.Tensor]

    @property
    def cls(self) -> torch.Tensor:
        return self.tokens[:, 0]

    @property
    def patches(self) -> torch.Tensor:
        return self.tokens[:, 1:] if self.has_cls else self.tokens


class PyramidVisionTransformer(nn.Module):
    """PVT v1 (defaults: v1-small) returning every stage's output; see the module docstring.

    Args:
        img_size: the grid the position embeddings are stored for (224: the ImageNet checkpoint's).
        stage_cls: which stages carry a CLS token (plain PVT v1: stage 4 only; MGHFT: all four).
        checkpoint: optional local PVT v1 weight file (``pvt_small.pth``), loaded non-strictly.
    """

    _head_prefixes = ("head.",)  # the ImageNet classifier of a PVT checkpoint (not part of this module)

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        embed_dims: Sequence[int] = (64, 128, 320, 512),
        num_heads: Sequence[int] = (1, 2, 5, 8),
        mlp_ratios: Sequence[float] = (8, 8, 4, 4),
        depths: Sequence[int] = (3, 4, 6, 3),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        stage_cls: Sequence[bool] = (False, False, False, True),
        checkpoint: str | None = None,
    ) -> None:
        super().__init__()
        lists = {"embed_dims": embed_dims, "num_heads": num_heads, "mlp_ratios": mlp_ratios}
        lists.update({"depths": depths, "sr_ratios": sr_ratios, "stage_cls": stage_cls})
        for key, value in lists.items():
            if len(value) != 4:
                raise invalid_value(f"model.{key}", list(value), "a list of 4 values (one per stage)")
        self.embed_dims = [int(d) for d in embed_dims]
        self.num_heads = [int(h) for h in num_heads]
        self.depths = [int(d) for d in depths]
        self.sr_ratios = [int(s) for s in sr_ratios]
        self.stage_cls = [bool(c) for c in stage_cls]
        self.img_size = int(img_size)
        self.patch_size = int(patch_size)
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        dpr = torch.linspace(0, drop_path_rate, sum(self.depths)).tolist()
        cur = 0
        for i in range(4):
            # stage i > 0 embeds the previous stage's map (img / (patch * 2^(i-1))) with 2x2 patches
            embed = PatchEmbed(
                self.img_size if i == 0 else self.img_size // (self.patch_size * 2 ** (i - 1)),
                self.patch_size if i == 0 else 2,
                in_chans if i == 0 else self.embed_dims[i - 1],
                self.embed_dims[i],
            )
            # stage 4's position embedding has a CLS slot (PVT v1); stages 1-3 do not (see docstring)
            pos = nn.Parameter(torch.zeros(1, embed.num_patches + (1 if i == 3 else 0), self.embed_dims[i]))
            blocks = nn.ModuleList(
                Block(
                    self.embed_dims[i],
                    self.num_heads[i],
                    float(mlp_ratios[i]),
                    qkv_bias,
                    drop_rate,
                    attn_drop_rate,
                    dpr[cur + j],
                    self.sr_ratios[i],
                    norm_layer,
                )
                for j in range(self.depths[i])
            )
            cur += self.depths[i]
            setattr(self, f"patch_embed{i + 1}", embed)
            setattr(self, f"pos_embed{i + 1}", pos)
            setattr(self, f"pos_drop{i + 1}", nn.Dropout(drop_rate))
            setattr(self, f"block{i + 1}", blocks)
            if self.stage_cls[i] and i < 3:
                setattr(self, f"cls_token{i + 1}", nn.Parameter(torch.zeros(1, 1, self.embed_dims[i])))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims[3]))
        self.norm = norm_layer(self.embed_dims[3])
        for i in range(4):
            trunc_normal_(getattr(self, f"pos_embed{i + 1}"), std=0.02)
            if self.stage_cls[i] and i < 3:
                trunc_normal_(getattr(self, f"cls_token{i + 1}"), std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        self.apply(self._init_weights)
        if checkpoint:
            load_local_weights(self, checkpoint)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def add_stage_cls_tokens(self) -> PyramidVisionTransformer:
        """Give every stage a CLS token (MGHFT's ``--locals 1 1 1 0``); new tokens are initialised as
        PVT initialises its own (truncated normal, std 0.02). Returns ``self``."""
        for i in range(3):
            if not self.stage_cls[i]:
                token = nn.Parameter(torch.zeros(1, 1, self.embed_dims[i], device=self.cls_token.device))
                trunc_normal_(token, std=0.02)
                setattr(self, f"cls_token{i + 1}", token)
                self.stage_cls[i] = True
        self.stage_cls[3] = True
        return self

    def no_weight_decay(self) -> set[str]:
        """Parameter names AdamW leaves undecayed (as PVT does: the CLS tokens)."""
        return {"cls_token", *(f"cls_token{i + 1}" for i in range(3) if self.stage_cls[i])}

    # ---- checkpoint loading (runner.models.checkpoint hook) ----
    def _checkpoint_key_map(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Resize position embeddings stored for another grid (bilinear, the CLS slot kept)."""
        own = self.state_dict()
        out = dict(state_dict)
        for i in range(4):
            key = f"pos_embed{i + 1}"
            if key in out and key in own and out[key].shape != own[key].shape:
                extra = 1 if i == 3 else 0
                src = out[key]
                n_src = src.shape[1] - extra
                side = int(round(n_src**0.5))
                if side * side != n_src or src.shape[-1] != own[key].shape[-1]:
                    continue  # not a square grid of the same width: leave it to the shape check
                embed = getattr(self, f"patch_embed{i + 1}")
                grid = _resize_grid(src[:, extra:], side, side, embed.H, embed.W)
                out[key] = torch.cat([src[:, :extra], grid], dim=1)
        return out

    # ---- forward ----
    def _pos_embed(self, i: int, H: int, W: int) -> torch.Tensor:
        """Stage ``i``'s position embedding for an ``H x W`` grid (patch part only)."""
        pos = getattr(self, f"pos_embed{i + 1}")
        patches = pos[:, 1:] if i == 3 else pos
        embed = getattr(self, f"patch_embed{i + 1}")
        if H * W == embed.num_patches and (H, W) == (embed.H, embed.W):
            return patches
        return _resize_grid(patches, embed.H, embed.W, H, W)

    def forward_stages(
        self, x: torch.Tensor, need_weights: Sequence[bool] | bool = False
    ) -> list[StageOutput]:
        """Run the four stages; stage ``i`` keeps its blocks' attention maps if ``need_weights[i]``."""
        if isinstance(need_weights, bool):
            need_weights = [need_weights] * 4
        B = x.shape[0]
        outputs: list[StageOutput] = []
        for i in range(4):
            tokens, H, W = getattr(self, f"patch_embed{i + 1}")(x)
            tokens = tokens + self._pos_embed(i, H, W)
            has_cls = self.stage_cls[i]
            if has_cls:
                if i == 3:
                    cls = self.cls_token + self.pos_embed4[:, :1]
                else:
                    cls = getattr(self, f"cls_token{i + 1}")
                tokens = torch.cat([cls.expand(B, -1, -1), tokens], dim=1)
            tokens = getattr(self, f"pos_drop{i + 1}")(tokens)
            attentions = []
            for block in getattr(self, f"block{i + 1}"):
                tokens, attn = block(tokens, H, W, has_cls, bool(need_weights[i]))
                if attn is not None:
                    attentions.append(attn)
            out = StageOutput(tokens, H, W, has_cls, attentions)
            outputs.append(out)
            if i < 3:
                x = out.patches.transpose(1, 2).reshape(B, -1, H, W)
        return outputs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised stage-4 CLS token ``[B, embed_dims[3]]`` (stage 4 must have its CLS token)."""
        last = self.forward_stages(x)[-1]
        tokens = self.norm(last.tokens)
        return tokens[:, 0] if last.has_cls else tokens.mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features, not logits: the methods own their classifiers (the checkpoint's ``head`` is unused)."""
        return self.forward_features(x)


def _resize_grid(tokens: torch.Tensor, H0: int, W0: int, H: int, W: int) -> torch.Tensor:
    """``[1, H0*W0, C]`` position embeddings resized bilinearly to ``[1, H*W, C]``."""
    C = tokens.shape[-1]
    grid = tokens.reshape(1, H0, W0, C).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(H, W), mode="bilinear", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, H * W, C)
