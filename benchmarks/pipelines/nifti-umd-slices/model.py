"""model.py - 2D U-Net (logits output)."""
import torch
import torch.nn as nn


class DoubleConv(nn.Module):
    def __init__(self, in_ch, out_ch):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.InstanceNorm2d(out_ch, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.InstanceNorm2d(out_ch, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
        )

    def forward(self, x):
        return self.conv(x)


class UNet(nn.Module):
    def __init__(self, in_channels=1, out_channels=1, base_filters=32, depth=4):
        super().__init__()
        self.down = nn.ModuleList()
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        ch = in_channels
        filters = [base_filters * 2 ** i for i in range(depth)]
        for f in filters:
            self.down.append(DoubleConv(ch, f))
            ch = f
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DoubleConv(filters[-1], filters[-1] * 2)
        for f in reversed(filters):
            self.up.append(nn.ConvTranspose2d(f * 2, f, 2, stride=2))
            self.up_conv.append(DoubleConv(f * 2, f))
        self.out = nn.Conv2d(filters[0], out_channels, 1)

    def forward(self, x):
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, conv, skip in zip(self.up, self.up_conv, reversed(skips)):
            x = conv(torch.cat([up(x), skip], dim=1))
        return self.out(x)
