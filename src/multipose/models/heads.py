"""Heatmap heads (decoders) of ViTPose, with the official mmpose key names.

All heads map a backbone feature map ``[B, C, h, w]`` to heatmaps ``[B, K, h*u, w*u]``, where ``u`` is the
upsampling factor. Heatmaps should be 1/4 of the input, so ``u = stride / 4`` for a backbone of stride
``stride``: ``u = 4`` for the standard ViTPose patch embedding (stride 16, ``ratio=1``), ``u = 2`` for
``ratio=2`` (stride 8), ``u = 1`` for ``ratio=4``. :func:`upsample_for_stride` computes it.

- :class:`ClassicHead` (``TopdownHeatmapSimpleHead`` default): ``deconv_layers`` = ``log2(u)`` blocks of
  ConvTranspose2d(k4, s2, p1, no bias) -> BatchNorm -> ReLU (indices 0..5 for two blocks), then
  ``final_layer`` = Conv 1x1. ``frozen_predictor=True`` gives the paper's **classic-FP** decoder (ViTPose++ Sec.
  3.1, Fig. 3a, Table 3): same structure, but the predictor layer (``final_layer``) is randomly initialised and
  kept fixed (``requires_grad=False``).
- :class:`SimpleHead`: ReLU -> bilinear x``u`` (``align_corners=False``) -> ``final_layer`` Conv 3x3. The order
  ReLU-then-upsample follows the released code (the paper's Eq. 3 writes the bilinear first).
- :class:`MinimalHead`: ``final_layer`` Conv 1x1 to ``u*u*K`` channels, then depth-to-space (``pixel_shuffle``;
  the paper's Eq. 4 calls it "PixelUnshuffle"): output keypoint k at ``(y*u + i, x*u + j)`` comes from channel
  ``k*u*u + i*u + j``.

Initialisation as mmpose: deconv and conv weights normal(std=0.001), conv biases 0, BN weight 1 / bias 0.
The frozen classic-FP predictor instead keeps PyTorch's default (Kaiming-uniform) weight with a zero bias: a
fixed projection with std 0.001 would need the BN scales to grow ~30x before heatmaps of peak 1 are reachable;
the paper does not give its scale.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    "ClassicHead",
    "SimpleHead",
    "MinimalHead",
    "build_head",
    "upsample_for_stride",
    "HEAD_TYPES",
    "recording_bn_statistics",
    "bn_statistics_from",
]

HEAD_TYPES = ("classic", "classic_fp", "simple", "minimal")


def upsample_for_stride(stride: int, heatmap_stride: int = 4) -> int:
    """Head upsampling factor so that heatmap size = input / ``heatmap_stride`` (16 -> 4, 8 -> 2, 4 -> 1)."""
    if stride % heatmap_stride:
        raise ValueError(f"backbone stride {stride} is not a multiple of the heatmap stride {heatmap_stride}")
    return stride // heatmap_stride


def _deconv_geometry(kernel: int) -> tuple[int, int]:
    """(padding, output_padding) that make a stride-2 ConvTranspose2d exactly double the size (mmpose rule)."""
    if kernel == 4:
        return 1, 0
    if kernel == 3:
        return 1, 1
    if kernel == 2:
        return 0, 0
    raise ValueError(f"deconv kernel must be 2, 3 or 4, got {kernel}")


def _init_conv(m: nn.Module) -> None:
    nn.init.normal_(m.weight, std=0.001)
    if m.bias is not None:
        nn.init.zeros_(m.bias)


class ClassicHead(nn.Module):
    """Classic ViTPose decoder: ``deconv_layers`` (ConvT-BN-ReLU per x2) + ``final_layer`` (1x1 conv).

    Args:
        in_channels: backbone channels C.
        num_keypoints: K heatmaps.
        num_deconv_filters: output channels of each deconv block; the number of blocks is ``log2(upsample)``
            and one filter count is needed per block (official 256, 256; a tiny CPU model can use e.g. 64, 64).
        upsample: total upsampling (a power of two; 1 means no deconv block).
        deconv_kernel: 4 (official), 3 or 2.
        final_conv_kernel: predictor kernel size (1 official; 3 uses padding 1).
        frozen_predictor: classic-FP (see module docstring).
    """

    def __init__(
        self,
        in_channels: int,
        num_keypoints: int,
        num_deconv_filters: Sequence[int] = (256, 256),
        upsample: int = 4,
        deconv_kernel: int = 4,
        final_conv_kernel: int = 1,
        frozen_predictor: bool = False,
    ) -> None:
        super().__init__()
        if upsample < 1 or upsample & (upsample - 1):
            raise ValueError(f"ClassicHead upsample must be a power of two (1, 2, 4, ...), got {upsample}")
        n_deconv = int(math.log2(upsample))
        filters = tuple(int(f) for f in num_deconv_filters)
        if len(filters) < n_deconv:
            raise ValueError(
                f"ClassicHead needs {n_deconv} deconv filter counts for upsample={upsample}, got {filters}"
            )
        filters = filters[:n_deconv]
        if final_conv_kernel not in (1, 3):
            raise ValueError(f"final_conv_kernel must be 1 or 3, got {final_conv_kernel}")
        self.in_channels, self.num_keypoints, self.upsample = in_channels, num_keypoints, upsample
        self.frozen_predictor = frozen_predictor
        pad, out_pad = _deconv_geometry(deconv_kernel)
        layers: list[nn.Module] = []
        ch = in_channels
        for f in filters:
            layers += [
                nn.ConvTranspose2d(
                    ch, f, deconv_kernel, stride=2, padding=pad, output_padding=out_pad, bias=False
                ),
                nn.BatchNorm2d(f),
                nn.ReLU(inplace=True),
            ]
            ch = f
        self.deconv_layers = nn.Sequential(*layers) if layers else nn.Identity()
        self.final_layer = nn.Conv2d(ch, num_keypoints, final_conv_kernel, padding=final_conv_kernel // 2)
        self.init_weights()

    def init_weights(self) -> None:
        for m in self.deconv_layers.modules():
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.normal_(m.weight, std=0.001)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.frozen_predictor:
            self.final_layer.reset_parameters()  # PyTorch default (Kaiming-uniform) random projection
            nn.init.zeros_(self.final_layer.bias)
            self.final_layer.requires_grad_(False)
        else:
            _init_conv(self.final_layer)

    def forward(self, x: Tensor) -> Tensor:
        return self.final_layer(self.deconv_layers(x))


class SimpleHead(nn.Module):
    """Simple ViTPose decoder: ReLU -> bilinear x``upsample`` -> ``final_layer`` (3x3 conv, padding 1)."""

    def __init__(
        self, in_channels: int, num_keypoints: int, upsample: int = 4, final_conv_kernel: int = 3
    ) -> None:
        super().__init__()
        if upsample < 1:
            raise ValueError(f"SimpleHead upsample must be >= 1, got {upsample}")
        if final_conv_kernel not in (1, 3):
            raise ValueError(f"final_conv_kernel must be 1 or 3, got {final_conv_kernel}")
        self.in_channels, self.num_keypoints, self.upsample = in_channels, num_keypoints, upsample
        self.final_layer = nn.Conv2d(
            in_channels, num_keypoints, final_conv_kernel, padding=final_conv_kernel // 2
        )
        _init_conv(self.final_layer)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(x)
        if self.upsample != 1:
            x = F.interpolate(x, scale_factor=self.upsample, mode="bilinear", align_corners=False)
        return self.final_layer(x)


class MinimalHead(nn.Module):
    """Minimal ViTPose decoder: ``final_layer`` 1x1 conv to ``upsample**2 * K`` channels + ``pixel_shuffle``."""

    def __init__(self, in_channels: int, num_keypoints: int, upsample: int = 4) -> None:
        super().__init__()
        if upsample < 1:
            raise ValueError(f"MinimalHead upsample must be >= 1, got {upsample}")
        self.in_channels, self.num_keypoints, self.upsample = in_channels, num_keypoints, upsample
        self.final_layer = nn.Conv2d(in_channels, num_keypoints * upsample * upsample, 1)
        _init_conv(self.final_layer)

    def forward(self, x: Tensor) -> Tensor:
        x = self.final_layer(x)
        return F.pixel_shuffle(x, self.upsample) if self.upsample != 1 else x


def build_head(kind: str, in_channels: int, num_keypoints: int, upsample: int = 4, **kwargs) -> nn.Module:
    """Build a head by name: ``classic`` | ``classic_fp`` | ``simple`` | ``minimal`` (extra kwargs go to the class)."""
    if kind == "classic":
        return ClassicHead(in_channels, num_keypoints, upsample=upsample, **kwargs)
    if kind == "classic_fp":
        return ClassicHead(in_channels, num_keypoints, upsample=upsample, frozen_predictor=True, **kwargs)
    if kind == "simple":
        return SimpleHead(in_channels, num_keypoints, upsample=upsample, **kwargs)
    if kind == "minimal":
        return MinimalHead(in_channels, num_keypoints, upsample=upsample, **kwargs)
    raise ValueError(f"unknown head type {kind!r}; choose one of {', '.join(HEAD_TYPES)}")


# ----------------------------------------------------------------------------------------- BatchNorm statistics


@contextmanager
def recording_bn_statistics(head: nn.Module) -> Iterator[dict[str, tuple[Tensor, Tensor]]]:
    """Record, for every BatchNorm layer of ``head`` in training mode, the batch mean and (biased) variance it
    normalises with during the forward passes inside the ``with`` block: ``{module name: (mean, var)}``
    (detached). Used with :func:`bn_statistics_from` to run a head on other samples with these statistics."""
    stats: dict[str, tuple[Tensor, Tensor]] = {}
    hooks = []
    for name, module in head.named_modules():
        if isinstance(module, _BatchNorm) and module.training:

            def hook(mod: nn.Module, args: tuple, name: str = name) -> None:
                x = (
                    args[0].detach().float()
                )  # fp32 statistics, also under bf16 autocast (as BN computes them)
                dims = [0, *range(2, x.dim())]
                stats[name] = (x.mean(dims), x.var(dims, unbiased=False))

            hooks.append(module.register_forward_pre_hook(hook))
    try:
        yield stats
    finally:
        for h in hooks:
            h.remove()


@contextmanager
def bn_statistics_from(head: nn.Module, stats: Mapping[str, tuple[Tensor, Tensor]] | None) -> Iterator[None]:
    """Inside the block every BatchNorm layer of ``head`` normalises with fixed statistics and updates nothing:
    ``stats[name]`` where given (from :func:`recording_bn_statistics`), its running statistics otherwise
    (``stats=None``). The layers' affine parameters still get gradients; the statistics are constants."""
    saved = []
    for name, module in head.named_modules():
        if isinstance(module, _BatchNorm):
            saved.append((module, module.training, module.running_mean, module.running_var))
            module.training = False
            if stats is not None and name in stats:
                module.running_mean, module.running_var = stats[name]
    try:
        yield
    finally:
        for module, training, mean, var in saved:
            module.training = training
            module.running_mean, module.running_var = mean, var
