"""The convolutional encoder and decoder of the study, shared by the built-in variants.

Three blocks of Conv2d + activation + BatchNorm with 64, 48 and 32 filters; stride-2 convolutions halve the image at
each block (64 -> 32 -> 16 -> 8), and the decoder mirrors them with transposed convolutions back to 64x64.
"""

from __future__ import annotations

from torch import nn

IMAGE_SIZE = 64
# The output bias starts at the logit of the average pixel (about 1 % ink): training then spends its first steps on
# the strokes instead of on learning that the background is black.
INK_PRIOR_LOGIT = -4.6


def _down(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1), nn.LeakyReLU(0.1), nn.BatchNorm2d(out_ch)]


def _up(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1), nn.LeakyReLU(0.1),
            nn.BatchNorm2d(out_ch)]


def feature_size(widths: tuple[int, ...]) -> int:
    side = IMAGE_SIZE // 2 ** len(widths)
    return widths[-1] * side * side


def conv_encoder(widths: tuple[int, ...], in_channels: int = 1) -> nn.Sequential:
    """Image [B, in_channels, 64, 64] -> flat features [B, feature_size(widths)]."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += _down(in_channels, width)
        in_channels = width
    return nn.Sequential(*layers, nn.Flatten())


def conv_decoder(widths: tuple[int, ...]) -> nn.Sequential:
    """Flat features [B, feature_size(widths)] -> image logits [B, 1, 64, 64]."""
    side = IMAGE_SIZE // 2 ** len(widths)
    back = list(reversed(widths))
    layers: list[nn.Module] = [nn.Unflatten(1, (back[0], side, side))]
    for in_ch, out_ch in zip(back, back[1:]):
        layers += _up(in_ch, out_ch)
    last = nn.ConvTranspose2d(back[-1], 1, 3, stride=2, padding=1, output_padding=1)
    nn.init.constant_(last.bias, INK_PRIOR_LOGIT)
    layers.append(last)
    return nn.Sequential(*layers)
