"""Your model, your loop, your data: the robust trust region inside a plain PyTorch training loop.

Everything here is ordinary PyTorch — a user's own ``nn.Module``, ``Dataset`` (with its own joint
augmentation) and ``DataLoader`` — except the lines marked ``# chainrule2``: a stage A every few
epochs on the network's own NCHW logits, its labels cached per item, and a stage-B criterion.
docs/own_loop.md walks through it.

    python examples/own_loop.py                  # generated demo data, ~20 s on one CPU thread
    python examples/own_loop.py --device cuda
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import chainrule2 as cr  # chainrule2
from chainrule2.divergences import CrossEntropy, RobustCrossEntropy  # chainrule2
from chainrule2.losses import ScribblePotts  # chainrule2
from chainrule2.solvers import AlphaExpansion  # chainrule2
from chainrule2_torch import SeedAwareLoss  # chainrule2
from chainrule2_torch.data import make_demo_dataset  # chainrule2 (only the demo images; use your own files)


class TinyNet(nn.Module):
    """Your network: images (N, 3, H, W) -> logits (N, C, H, W)."""

    def __init__(self, num_classes: int, width: int = 16):
        super().__init__()

        def block(cin: int, cout: int, dilation: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation), nn.BatchNorm2d(cout), nn.ReLU()
            )

        self.body = nn.Sequential(
            block(3, width, 1), block(width, width, 2), block(width, width, 4), block(width, width, 1)
        )
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class ScribbleDataset(Dataset):
    """Your data set: RGB uint8 (H, W, 3), scribbles (H, W) with 255 = unlabeled, an id per item.

    ``labels`` (id -> (H, W) labels, e.g. the stage-A cache) are returned as ``target`` and flipped
    and cropped jointly with the image; without a cached label the target is the scribbles.
    """

    def __init__(self, items: list[dict], labels: dict | None = None, crop: int | None = None, seed: int = 0):
        self.items, self.labels, self.crop, self.seed, self.epoch = items, labels or {}, crop, seed, 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        rgb, seeds = np.array(item["rgb"]), np.array(item["seeds"])  # writable copies for torch
        target = self.labels.get(item["id"], seeds)
        if self.crop is not None:  # joint augmentation: one random flip and crop for all three arrays
            rng = np.random.default_rng([self.seed, self.epoch, i])
            if rng.random() < 0.5:
                rgb, seeds, target = rgb[:, ::-1], seeds[:, ::-1], target[:, ::-1]
            y, x = (int(rng.integers(0, n - self.crop + 1)) for n in seeds.shape)
            window = (slice(y, y + self.crop), slice(x, x + self.crop))
            rgb, seeds, target = rgb[window], seeds[window], target[window]
        image = (torch.as_tensor(np.ascontiguousarray(rgb), dtype=torch.float32).permute(2, 0, 1) / 255 - 0.5) / 0.25
        out = {"image": image, "rgb": torch.as_tensor(np.ascontiguousarray(rgb)), "id": item["id"],
               "seeds": torch.as_tensor(np.ascontiguousarray(seeds), dtype=torch.int64),
               "target": torch.as_tensor(np.ascontiguousarray(target), dtype=torch.int64)}  # fmt: skip
        if self.crop is None and item.get("mask") is not None:
            out["mask"] = torch.as_tensor(np.array(item["mask"]), dtype=torch.int64)
        return out


def miou(model: nn.Module, items: list[dict], num_classes: int, device: str) -> float:
    """Your metric: mIoU (%) of the arg-max prediction on full-size images."""
    model.eval()
    inter, union = np.zeros(num_classes), np.zeros(num_classes)
    with torch.no_grad():
        for batch in DataLoader(ScribbleDataset(items), batch_size=8):
            pred, truth = model(batch["image"].to(device)).argmax(1).cpu().numpy(), batch["mask"].numpy()
            valid = truth < num_classes  # 255 = void
            for c in range(num_classes):
                inter[c] += np.sum((pred == c) & (truth == c) & valid)
                union[c] += np.sum(((pred == c) | (truth == c)) & valid)
    model.train()
    return float(100 * np.mean(inter[union > 0] / union[union > 0]))


def refresh_labels(model, stage_a, items: list[dict], labels: dict, device: str) -> None:
    """Stage A on every training image (full size, eval mode), warm-started from the cached labels."""
    model.eval()
    with torch.no_grad():
        for batch in DataLoader(ScribbleDataset(items), batch_size=8):
            logits = model(batch["image"].to(device))  # NCHW, on your device
            problem = cr.Batch(None, batch["seeds"], images=batch["rgb"])  # chainrule2
            warm = [labels.get(i) for i in batch["id"]]  # chainrule2
            proposal = stage_a.propose(logits, problem, initial=warm, class_axis=1)  # chainrule2
            labels.update(zip(batch["id"], proposal.targets.cpu().numpy(), strict=True))  # chainrule2
    model.train()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=32, help="generated images (half train, a quarter val)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--warmup-epochs", type=int, default=8)
    p.add_argument("--epochs", type=int, default=8, help="epochs after the warm-up")
    p.add_argument("--stage-a-every", type=int, default=2)
    p.add_argument("--trust-weight", type=float, default=16.0, help="beta")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    samples = make_demo_dataset(args.images, args.size, seed=args.seed)
    items = [{"id": s.id, "rgb": s.image, "seeds": s.seeds, "mask": s.mask} for s in samples]
    train_items, val_items = items[: len(items) // 2], items[len(items) // 2 : 3 * len(items) // 4]
    num_classes = samples[0].num_classes
    model = TinyNet(num_classes).to(args.device)

    stage_a = cr.StageA(
        AlphaExpansion(), ScribblePotts(potts_weight=100.0), CrossEntropy(), args.trust_weight
    )  # chainrule2
    pce = SeedAwareLoss(None, normalization="mean")  # chainrule2: the scribbles only
    robust = SeedAwareLoss(
        RobustCrossEntropy(0.9 * (num_classes - 1) / num_classes, num_classes), normalization="mean"
    )  # chainrule2
    labels: dict = {}  # id -> stage-A labels (H, W): the cache
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    result = {}
    for epoch in range(args.warmup_epochs + args.epochs):
        after = epoch - args.warmup_epochs
        if after >= 0 and after % args.stage_a_every == 0:
            refresh_labels(model, stage_a, train_items, labels, args.device)
        dataset = ScribbleDataset(train_items, labels, crop=args.size * 3 // 4, seed=args.seed)
        dataset.epoch = epoch
        loader = DataLoader(dataset, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(epoch))
        for batch in loader:
            out = model(batch["image"].to(args.device))
            if after < 0:
                loss = pce(out, None, batch["seeds"])  # chainrule2
            else:
                loss = robust(out, batch["target"], batch["seeds"])  # chainrule2
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if epoch == args.warmup_epochs - 1:
            result["val_miou_after_warmup"] = miou(model, val_items, num_classes, args.device)
    result["val_miou"] = miou(model, val_items, num_classes, args.device)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
