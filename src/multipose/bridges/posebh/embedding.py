"""The keypoint embedding module of PoseBH (released ``KptProtoHead``): a branch on the backbone features, separate
from the heatmap heads, that maps ``[B, C, h, w]`` to pixel embeddings ``[B, F, h*u, w*u]``.

Layers (ViT-B, stride 16, ``u = 4``): ``log2(u)`` x [ConvT(k4, s2, p1, no bias) - BN - ReLU] with 256 filters
(ViTPose++ head style), a residual block ``ResBlock(256 -> F, SiLU)`` (conv3x3 - BN - SiLU - conv3x3 - BN plus a
1x1-conv - BN projection shortcut, SiLU after the sum: two 3x3 convs, one more than the supplement's wording), then
conv3x3 - BN - SiLU - conv1x1 to F = 64. Init as the released ``init_weights``: every conv and transposed conv
N(0, 0.001) with zero bias, BatchNorm weight 1 and bias 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["KeypointEmbedding", "ResBlock"]


class ResBlock(nn.Module):
    """conv3x3(+bias) - BN - SiLU - conv3x3 - BN, plus a 1x1 (no bias) - BN projection shortcut; SiLU after the sum."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.SiLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
        )
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class KeypointEmbedding(nn.Module):
    """Args:
    in_channels: backbone width C.
    dim: embedding channels F (64).
    upsample: total upsampling ``u`` (a power of two; the heads' factor, so the embedding map has the heatmap size).
    deconv_filters: channels of the deconv blocks (256, 256 released; one per x2).
    """

    def __init__(
        self, in_channels: int, dim: int = 64, upsample: int = 4, deconv_filters: Sequence[int] = (256, 256)
    ) -> None:
        super().__init__()
        if upsample < 1 or upsample & (upsample - 1):
            raise ValueError(f"bridge.posebh: embedding upsample must be a power of two, got {upsample}")
        n = int(math.log2(upsample))
        filters = [int(f) for f in deconv_filters]
        if len(filters) < n:
            raise ValueError(
                f"bridge.posebh.deconv_filters needs {n} entries for an x{upsample} upsampling, got {filters}"
            )
        layers: list[nn.Module] = []
        ch = in_channels
        for f in filters[:n]:
            layers += [
                nn.ConvTranspose2d(ch, f, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(f),
                nn.ReLU(inplace=True),
            ]
            ch = f
        self.upsample = nn.Sequential(*layers)
        self.neck = ResBlock(ch, dim)
        self.head = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1),
            nn.BatchNorm2d(dim),
            nn.SiLU(inplace=True),
            nn.Conv2d(dim, dim, 1),
        )
        self.dim = dim
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, features: Tensor) -> Tensor:
        return self.head(self.neck(self.upsample(features)))
