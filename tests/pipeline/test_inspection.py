"""`llmseg inspect`: the Tables 1-2 row of hand-written networks whose answer is known, built in the real sandbox."""

from __future__ import annotations

import json
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmseg_mlflow.cli import main
from llmseg_mlflow.pipeline import inspection, sandbox

pytestmark = pytest.mark.skipif(sandbox.bwrap_path() is None, reason="needs bubblewrap (apt-get install bubblewrap)")

BLOCKS = """
import torch
import torch.nn as nn
import torch.nn.functional as F


class DoubleConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                                 nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x):
        return self.net(x)
"""

# A U-Net with one DoubleConv per encoder stage; `HEAD` is how forward() ends.
UNET = (
    BLOCKS
    + """

class UNet(nn.Module):
    def __init__(self, in_channels=1, out_channels=1, features=FEATURES):
        super().__init__()
        self.downs, self.ups = nn.ModuleList(), nn.ModuleList()
        c = in_channels
        for f in features:
            self.downs.append(DoubleConv(c, f))
            c = f
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DoubleConv(features[-1], features[-1] * 2)
        for f in reversed(features):
            self.ups.append(nn.ConvTranspose2d(f * 2, f, 2, stride=2))
            self.ups.append(DoubleConv(f * 2, f))
        self.final = nn.Conv2d(features[0], out_channels, 1)
        self.act = nn.Sigmoid()

    def forward(self, x):
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for i in range(0, len(self.ups), 2):
            x = self.ups[i](x)
            x = self.ups[i + 1](torch.cat([skips[-1 - i // 2], x], 1))
        HEAD
"""
)

# Four stages down, three up: the head runs at half resolution, then the output is resized.
FOUR_THREE = (
    BLOCKS
    + """

class ShortDecoderUNet(nn.Module):
    def __init__(self):
        super().__init__()
        f = [4, 8, 16, 32]
        self.enc = nn.ModuleList([DoubleConv(1, 4), DoubleConv(4, 8), DoubleConv(8, 16), DoubleConv(16, 32)])
        self.mid = DoubleConv(32, 64)
        self.up = nn.ModuleList([nn.ConvTranspose2d(64, 32, 2, 2), nn.ConvTranspose2d(32, 16, 2, 2),
                                 nn.ConvTranspose2d(16, 8, 2, 2)])
        self.dec = nn.ModuleList([DoubleConv(64, 32), DoubleConv(32, 16), DoubleConv(16, 8)])
        self.head = nn.Conv2d(8, 1, 1)

    def forward(self, x):
        size = x.shape[-2:]
        skips = []
        for enc in self.enc:
            x = enc(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.mid(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = dec(torch.cat([up(x), skip], 1))
        return F.interpolate(self.head(x), size=size, mode="bilinear")
"""
)

# Plain convs with functional ReLU, and a bottleneck of two widening convs.
CHAIN = """
import torch
import torch.nn as nn
import torch.nn.functional as F


class ChainUNet(nn.Module):
    def __init__(self, in_ch=3, out_ch=1):
        super().__init__()
        self.e1, self.e2 = nn.Conv2d(in_ch, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)
        self.b1, self.b2 = nn.Conv2d(16, 32, 3, padding=1), nn.Conv2d(32, 64, 3, padding=1)
        self.u2, self.d2 = nn.ConvTranspose2d(64, 16, 2, 2), nn.Conv2d(32, 16, 3, padding=1)
        self.u1, self.d1 = nn.ConvTranspose2d(16, 8, 2, 2), nn.Conv2d(16, 8, 3, padding=1)
        self.out = nn.Conv2d(8, out_ch, 1)

    def forward(self, x):
        s1 = F.relu(self.e1(x))
        s2 = F.relu(self.e2(F.max_pool2d(s1, 2)))
        b = F.relu(self.b2(F.relu(self.b1(F.max_pool2d(s2, 2)))))
        x = F.relu(self.d2(torch.cat([self.u2(b), s2], 1)))
        x = F.relu(self.d1(torch.cat([self.u1(x), s1], 1)))
        return self.out(x)
"""

SEQUENTIAL = """
import torch.nn as nn


class TinySegNet(nn.Sequential):
    def __init__(self):
        super().__init__(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(16, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, 1, 1),
        )
"""

# Every argument required: only main.py's call says how to build it.
NEEDS_ARGS = (
    BLOCKS
    + """

class UNet(nn.Module):
    def __init__(self, n_channels, n_classes, base, depth):
        super().__init__()
        widths = [base * 2 ** i for i in range(depth)]
        self.downs = nn.ModuleList()
        c = n_channels
        for w in widths:
            self.downs.append(DoubleConv(c, w))
            c = w
        self.mid = DoubleConv(c, c * 2)
        self.ups = nn.ModuleList([nn.ConvTranspose2d(w * 2, w, 2, 2) for w in reversed(widths)])
        self.decs = nn.ModuleList([DoubleConv(w * 2, w) for w in reversed(widths)])
        self.outc = nn.Conv2d(base, n_classes, 1)

    def forward(self, x):
        skips = []
        for d in self.downs:
            x = d(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.mid(x)
        for up, dec, s in zip(self.ups, self.decs, reversed(skips)):
            x = dec(torch.cat([up(x), s], 1))
        return self.outc(x)
"""
)

# main.py builds only the loss class of model.py; the network comes from a function.
LOSS_AND_BUILDER = """

class DiceLoss(nn.Module):
    def forward(self, pred, target):
        return 1 - (2 * (pred * target).sum() + 1) / (pred.sum() + target.sum() + 1)


def build_model():
    return UNet(in_channels=1, out_channels=1, features=(8, 16))
"""

NEEDS_DATA = (
    BLOCKS
    + """

class UNet(nn.Module):
    def __init__(self, dataset):
        super().__init__()
        channels = dataset[0][0].shape[0]  # reads a sample to size its input
        self.inc = DoubleConv(channels, 8)
        self.outc = nn.Conv2d(8, 1, 1)

    def forward(self, x):
        return self.outc(self.inc(x))
"""
)

MAIN = """
import torch
import torch.nn as nn
from dataset import SegDataset
{imports}

BATCH_SIZE = 4
NUM_EPOCHS = 3
LEARNING_RATE = 1e-3
IMG_SIZE = {size}
BASE = 16


def main():
    train_ds = SegDataset("data/images", "data/masks")
    model = {build}
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, weight_decay=1e-5)
    criterion = {loss}()


if __name__ == "__main__":
    main()
"""

DATASET = """
from torch.utils.data import Dataset


class SegDataset(Dataset):
    def __init__(self, image_dir, mask_dir):
        self.image_dir, self.mask_dir = image_dir, mask_dir
"""


def _folder(
    tmp: Path,
    name: str,
    model: str,
    build: str,
    imports: str = "from model import UNet",
    size: int = 32,
    loss: str = "nn.BCEWithLogitsLoss",
) -> Path:
    folder = tmp / name
    folder.mkdir()
    (folder / "model.py").write_text(textwrap.dedent(model))
    (folder / "dataset.py").write_text(DATASET)
    (folder / "train.py").write_text("def train_one_epoch(model, loader):\n    pass\n")
    (folder / "main.py").write_text(MAIN.format(imports=imports, build=build, size=size, loss=loss))
    return folder


def _unet(features: str, head: str) -> str:
    return UNET.replace("FEATURES", features).replace("HEAD", head)


# name -> (model.py, main.py's constructor call, its import, input size, the expected network fields)
NETWORKS = {
    "three_stages_sigmoid_module": (
        _unet("(8, 16, 32)", "return self.act(self.final(x))"),
        "UNet()",
        "from model import UNet",
        32,
        dict(
            encoder_stages=3,
            decoder_stages=3,
            encoder_channels=[8, 16, 32],
            decoder_channels=[32, 16, 8],
            bottleneck_channels=[32, 64],
            conv_block="DoubleConv: (Conv->BN->ReLU)x2",
            final_layer="Conv2d(8->1)+Sigmoid",
        ),
    ),
    "five_stages_logits": (
        _unet("(4, 8, 16, 32, 64)", "return self.final(x)"),
        "UNet(in_channels=3)",
        "from model import UNet",
        64,
        dict(
            encoder_stages=5,
            decoder_stages=5,
            encoder_channels=[4, 8, 16, 32, 64],
            decoder_channels=[64, 32, 16, 8, 4],
            bottleneck_channels=[64, 128],
            final_layer="Conv2d(4->1)",
            probe_input="1x3x64x64",
        ),
    ),
    "torch_sigmoid_in_forward": (
        _unet("(8, 16)", "return torch.sigmoid(self.final(x))"),
        "net.UNet(1, 2)",
        "import model as net",
        32,
        dict(encoder_stages=2, decoder_stages=2, final_layer="Conv2d(8->2)+Sigmoid"),
    ),
    "four_down_three_up": (
        FOUR_THREE,
        "ShortDecoderUNet()",
        "from model import ShortDecoderUNet",
        64,
        dict(
            encoder_stages=4,
            decoder_stages=3,
            encoder_channels=[4, 8, 16, 32],
            decoder_channels=[32, 16, 8],
            bottleneck_channels=[32, 64],
            final_layer="Conv2d(8->1)",
        ),
    ),
    "bottleneck_chain": (
        CHAIN,
        "ChainUNet()",
        "from model import ChainUNet",
        32,
        dict(
            encoder_stages=2,
            decoder_stages=2,
            encoder_channels=[8, 16],
            decoder_channels=[16, 8],
            bottleneck_channels=[16, 32, 64],
            conv_block="Conv->ReLU",
            final_layer="Conv2d(8->1)",
            probe_input="1x3x32x32",
        ),
    ),
    "sequential_only": (
        SEQUENTIAL,
        "TinySegNet()",
        "from model import TinySegNet",
        32,
        dict(
            encoder_stages=1,
            decoder_stages=1,
            encoder_channels=[8],
            decoder_channels=[8],
            bottleneck_channels=[8, 16],
            conv_block="Conv->ReLU",
            final_layer="Conv2d(8->1)",
        ),
    ),
    "built_by_a_function_beside_a_loss_class": (
        _unet("(8, 16)", "return self.final(x)") + LOSS_AND_BUILDER,
        "build_model()",
        "from model import build_model, DiceLoss\ncriterion = DiceLoss()",
        32,
        dict(encoder_stages=2, model_class="UNet", constructed_with="defaults"),
    ),
    "constructor_args_from_main": (
        NEEDS_ARGS,
        "UNet(n_channels=3, n_classes=1, base=BASE, depth=3)",
        "from model import UNet",
        32,
        dict(
            encoder_stages=3,
            decoder_stages=3,
            encoder_channels=[16, 32, 64],
            decoder_channels=[64, 32, 16],
            bottleneck_channels=[64, 128],
            final_layer="Conv2d(16->1)",
            probe_input="1x3x32x32",
            constructed_with="main.py:16",
        ),
    ),
}


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> dict[str, inspection.NetworkRow]:
    tmp = tmp_path_factory.mktemp("inspect")
    folders = {
        name: _folder(tmp, name, model, build, imports, size)
        for name, (model, build, imports, size, _) in NETWORKS.items()
    }
    # Each inspection is its own sandboxed Python (seconds of imports, one core): two at a time.
    with ThreadPoolExecutor(max_workers=2) as pool:
        found = {name: pool.submit(inspection.inspect_pipeline, folder) for name, folder in folders.items()}
        return {name: job.result() for name, job in found.items()}


@pytest.mark.parametrize("name", list(NETWORKS))
def test_network_fields_match_the_known_architecture(rows, name):
    row = rows[name].as_dict()
    assert "unavailable" not in row, row
    for key, expected in NETWORKS[name][4].items():
        assert row[key] == expected, (key, row)
    assert type(row["params_total"]) is int and row["params_total"] > 0


def test_params_total_counts_every_parameter(rows):
    # DoubleConv(c, f): two 3x3 convs with bias, two BatchNorms (weight + bias).
    def dc(c, f):
        return (9 * c * f + f) + (9 * f * f + f) + 4 * f

    enc = dc(1, 8) + dc(8, 16) + dc(16, 32)
    mid = dc(32, 64)
    dec = sum((4 * 2 * f * f + f) + dc(2 * f, f) for f in (32, 16, 8))
    assert rows["three_stages_sigmoid_module"].params_total == enc + mid + dec + (8 + 1)


def test_static_fields_come_from_the_code(rows):
    row = rows["three_stages_sigmoid_module"].as_dict()
    assert {k: row[k] for k in inspection.STATIC} == {
        "batch_size": 4,
        "epochs": 3,
        "optimizer": "Adam",
        "lr": 0.001,
        "weight_decay": 1e-05,
        "loss": "BCEWithLogitsLoss",
        "input_size": "32x32",
    }
    params = rows["five_stages_logits"].as_params()
    assert params["encoder_channels"] == "[4, 8, 16, 32, 64]" and params["encoder_stages"] == "5"
    assert all(isinstance(v, str) for v in params.values()) and "batch_size" not in params


def test_a_constructor_that_needs_data_leaves_the_network_unavailable(tmp_path):
    folder = _folder(tmp_path, "needs_data", NEEDS_DATA, "UNet(train_ds)")
    row = inspection.inspect_pipeline(folder)
    assert row.unavailable and "dataset" in row.unavailable and "train_ds" in row.unavailable
    assert row.encoder_stages is None and row.params_total is None
    assert row.batch_size == 4 and row.loss == "BCEWithLogitsLoss"  # the static fields are still there
    assert row.as_params()["network_unavailable"] == row.unavailable


def test_cli_json_row_and_a_failing_forward_pass(tmp_path):
    broken = _unet("(8, 16)", "return self.final(x)").replace("def forward(self, x):", "def forward(self, x, y):")
    folder = _folder(tmp_path, "two_inputs", broken, "UNet()")
    result = CliRunner().invoke(main, ["inspect", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.strip().splitlines()[-1])
    assert set(inspection.STATIC + inspection.NETWORK) <= set(row)
    assert "forward pass failed" in row["unavailable"] and "TypeError" in row["unavailable"]
    assert row["epochs"] == 3 and row["encoder_stages"] is None


def test_cli_table(rows, tmp_path, monkeypatch):
    monkeypatch.setattr(inspection, "inspect_pipeline", lambda *a, **k: rows["sequential_only"])
    result = CliRunner().invoke(main, ["inspect", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(None, 1) for line in result.output.splitlines() if not line.startswith("built"))
    assert lines["encoder_stages"] == "1" and lines["final_layer"] == "Conv2d(8->1)"
    assert (
        lines["bottleneck_channels"] == "8, 16" and lines["params_total"] == f"{rows['sequential_only'].params_total:,}"
    )
    assert "TinySegNet(main.py:16) on a 1x1x32x32 dummy batch" in result.output


@pytest.mark.parametrize(
    "model",
    [None, "import torch\n\ndef build():\n    return torch.nn.Conv2d(1, 1, 1)\n", "class Config:\n    lr = 1e-3\n"],
)
def test_a_folder_without_a_model_class_is_a_usage_error(tmp_path, model):
    folder = _folder(tmp_path, "nomodel", "x = 1\n", "None")
    if model is None:
        (folder / "model.py").unlink()
    else:
        (folder / "model.py").write_text(model)
    result = CliRunner().invoke(main, ["inspect", str(folder)])
    assert result.exit_code == 2, result.output
    assert "main.py" in result.output and "dataset.py" in result.output  # names the files it read
    if model is None or "class" not in model:  # found before any sandbox runs
        with pytest.raises(inspection.NoModelClassError):
            inspection.inspect_pipeline(folder)


def test_missing_folder_is_a_usage_error(tmp_path):
    assert CliRunner().invoke(main, ["inspect", str(tmp_path / "nope")]).exit_code == 2


def test_constructor_calls_resolve_module_constants():
    files = {
        "main.py": "from model import UNet as Net\nC = 3\nF = [C * 8, 64]\nCFG = {'k': 2}\n"
        "m = Net(C, n_classes=1, features=F, depth=CFG['k'], extra=args.x)\n"
    }
    calls = inspection.constructor_calls(files, {"UNet"})
    assert calls["UNet"]["args"] == [3]
    assert calls["UNet"]["kwargs"] == {"n_classes": 1, "features": [24, 64], "depth": 2}
    assert calls["UNet"]["unresolved"] == ["extra=args.x"] and calls["UNet"]["where"] == "main.py:5"


def test_probe_size_reads_the_input_size():
    assert inspection.probe_size("256x256") == [256, 256]
    assert inspection.probe_size("(1, 128, 160)") == [128, 160]
    assert inspection.probe_size(None) == [inspection.DEFAULT_SIZE] * 2
