"""Where in a frozen backbone is the AU signal usable? A small conv head on each block's token grid.

For each chosen block of the frozen ViT (0 = the patch embedding with position embeddings, k = the
output of block k), the tokens of every face of a store (the training recipe's evaluation view:
resize to 128, centre crop 112) are computed once; then a small convolutional head, the same for
every block, is trained on the fold's training subjects and scored on its test subjects:

    BatchNorm -> 1x1 conv 64 -> BN, ReLU -> 3x3 conv 64 -> BN, ReLU -> max-pool 2
              -> 3x3 conv 128 -> BN, ReLU -> average-pool to 2 x 2 -> dropout 0.3 -> linear (one logit per AU)

trained with binary cross-entropy (unknown labels -1 / 9 masked), AdamW (lr 1e-3, weight decay
0.05), batches of 32 drawn with replacement, no augmentation. The subjects of the fold are those of
``aucli train`` on ``recipes/synthetic.yaml`` (the learnability check's split). It prints, per block,
the test AUC (mean over AUs, pooled over faces and within each test subject) and the training AUC;
the gap between them is how much of what the head found is subject-specific.

It answers a question the trainer cannot: whether a backbone carries AU information that a trained
head can find within a CPU budget, separately from how AUFormer's experts and head reach it.

    python bench/token_probe.py STORE.h5 --labels synth_clean --weights embedded:synthface
    python bench/token_probe.py STORE.h5 --labels synth_clean --weights runs/hog/encoder.safetensors --blocks 0,2,4,6 --json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchlib import learning  # (the backbone card lookup of issue 4's check)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", type=Path, help="a corpus store with a label set")
    parser.add_argument("--labels", default=None, help="label set (default: the store's only one)")
    parser.add_argument("--weights", default="embedded:synthface", help="backbone: embedded:NAME or a weight file with its card")
    parser.add_argument("--random", action="store_true", help="the same architecture with random weights (the no-pretraining reference)")
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--blocks", default="0,2,4,6", help="comma-separated block indices (0: patch embedding)")
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps of the head (batches of 32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser.parse_args(argv)


def probe_recipe(store: Path, labels: str | None, weights: str, random_init: bool, seed: int):
    """recipes/synthetic.yaml on the backbone's card, with the label set's own AUs (the fold split of ``aucli train``)."""
    from aucli.config import Recipe, recipe_data
    from aucli.engine.data import resolve_label_set
    from aucli.store import CorpusStore

    path, model_config = learning.backbone(weights)
    with CorpusStore.open(store) as opened:
        label_set = resolve_label_set(opened, labels)
        au_names = opened.read_labels(label_set).au_names
    overrides = {
        "model.backbone": model_config["backbone"],
        "model.img_size": model_config["img_size"],
        "model.backbone_weights": "random" if random_init else path,
        "model.au_names": list(au_names),
        "data.labels": label_set,
        "train.protocol": "auto",
        "train.seed": seed,
    }
    data = recipe_data("synthetic", overrides)
    data["model"]["backbone_overrides"] = dict(model_config["backbone_overrides"])
    return Recipe.from_dict(data)


def block_tokens(vit, faces, blocks: list[int], batch_size: int = 128) -> dict[int, Any]:
    """Patch tokens ``(n, D, H, W)`` float16 of each block in ``blocks`` for every face of ``faces``."""
    import torch

    from aucli.model.backbone import backbone_data_config
    from aucli.engine.data import ShardBatchSampler, make_loader, normalize

    config = backbone_data_config(vit)
    mean, std = config["mean"], config["std"]
    gh, gw = (int(g) for g in vit.patch_embed.grid_size)
    prefix = int(vit.num_prefix_tokens)
    out: dict[int, list] = {b: [] for b in blocks}
    loader = make_loader(faces, ShardBatchSampler(len(faces), batch_size), num_workers=0)
    with torch.no_grad():
        for batch in loader:
            x = vit.patch_embed(normalize(batch["image"], mean, std, device=torch.device("cpu")))
            x = vit.norm_pre(vit._pos_embed(x))
            for index in range(max(blocks) + 1):
                if index > 0:
                    x = vit.blocks[index - 1](x)
                if index in out:
                    grid = x[:, prefix:].transpose(1, 2).reshape(len(x), -1, gh, gw)
                    out[index].append(grid.to(torch.float16))
    return {b: torch.cat(parts) for b, parts in out.items()}


def conv_head(dim: int, n_aus: int):
    from torch import nn

    return nn.Sequential(
        nn.BatchNorm2d(dim), nn.Conv2d(dim, 64, 1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(512, n_aus),
    )


def mean_auc(scores: np.ndarray, labels: np.ndarray, subjects: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Mean over AUs of the AUC (unknown labels left out); ``subjects``: the mean of within-subject AUCs instead."""
    from aucli.metrics import auc_scores

    labels = np.where(np.isin(labels, (0, 1)), labels, -1)
    per_au = np.full(labels.shape[1], np.nan)
    for j in range(labels.shape[1]):
        known = labels[:, j] >= 0
        if subjects is None:
            per_au[j] = auc_scores(scores[known, j : j + 1], labels[known, j : j + 1])[0]
        else:
            values = [auc_scores(scores[known & (subjects == s), j : j + 1], labels[known & (subjects == s), j : j + 1])[0]
                      for s in np.unique(subjects[known])]
            finite = [v for v in values if np.isfinite(v)]
            per_au[j] = float(np.mean(finite)) if finite else np.nan
    finite = per_au[np.isfinite(per_au)]
    return (float(finite.mean()) if finite.size else float("nan")), per_au


def train_head(tokens, labels: np.ndarray, train: np.ndarray, *, steps: int, seed: int):
    """A conv head trained on ``tokens[train]``; returns its scores for every face."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    head = conv_head(int(tokens.shape[1]), labels.shape[1])
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.05)
    targets = torch.as_tensor(labels, dtype=torch.float32)
    known = torch.as_tensor(np.isin(labels, (0, 1)), dtype=torch.float32)
    rows = torch.as_tensor(train)
    generator = torch.Generator().manual_seed(seed)
    head.train()
    for _ in range(steps):
        pick = rows[torch.randint(0, len(rows), (32,), generator=generator)]
        loss = F.binary_cross_entropy_with_logits(head(tokens[pick].float()), targets[pick].clamp(min=0), weight=known[pick], reduction="sum")
        loss = loss / known[pick].sum().clamp(min=1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    head.eval()
    with torch.no_grad():
        return torch.cat([head(tokens[i : i + 512].float()) for i in range(0, len(tokens), 512)]).numpy()


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from aucli.engine.data import AugmentedFaces, FaceTransform
    from aucli.engine.corpus import fold_indices, prepare_corpus
    from aucli.model.backbone import create_backbone

    torch.set_num_threads(args.threads)
    blocks = sorted({int(b) for b in str(args.blocks).split(",") if b.strip()})
    recipe = probe_recipe(args.store, args.labels, args.weights, args.random, args.seed)
    corpus = prepare_corpus(args.store, recipe)
    split, train, validation, test = fold_indices(corpus, args.fold, recipe)
    train = np.unique(np.concatenate([train, validation]))  # the head has no thresholds or epochs to select
    vit = create_backbone(recipe.model, weights=recipe.model.backbone_weights).eval()
    depth = len(vit.blocks)
    if not blocks or blocks[0] < 0 or blocks[-1] > depth:
        raise SystemExit(f"--blocks must be between 0 and {depth} (this backbone has {depth} blocks)")
    started = time.perf_counter()
    transform = FaceTransform.from_config(recipe.data, int(recipe.model.img_size), train=False)
    tokens = block_tokens(vit, AugmentedFaces(corpus.dataset, transform), blocks)
    token_seconds = time.perf_counter() - started
    labels = np.asarray(corpus.labels)
    results = []
    for block in blocks:
        tick = time.perf_counter()
        scores = train_head(tokens[block], labels, train, steps=args.steps, seed=args.seed)
        test_auc, per_au = mean_auc(scores[test], labels[test])
        within, _ = mean_auc(scores[test], labels[test], corpus.subjects[test])
        train_auc, _ = mean_auc(scores[train], labels[train])
        results.append({"block": block, "test_auc": test_auc, "test_auc_within_subjects": within, "train_auc": train_auc,
                        "test_auc_per_au": dict(zip(corpus.columns, per_au.tolist())), "seconds": time.perf_counter() - tick})
    return {
        "store": str(args.store), "label_set": corpus.label_set, "weights": "random" if args.random else args.weights,
        "fold": args.fold, "train_subjects": len(split.train) + len(split.validation), "test_subjects": len(split.test),
        "faces": {"train": int(train.size), "test": int(test.size)}, "steps": args.steps, "seed": args.seed,
        "token_seconds": token_seconds, "blocks": results,
    }


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    def pct(value: float) -> str:
        return "-" if value is None or not np.isfinite(value) else f"{100 * value:.1f}"

    table = Table(title=f"Conv head on frozen tokens, {report['steps']} steps: test AUC (%)",
                  caption=f"{report['weights']}, label set {report['label_set']}, fold {report['fold']} "
                          f"({report['train_subjects']} training / {report['test_subjects']} test subjects), seed {report['seed']}")
    table.add_column("block")
    table.add_column("test", justify="right", style="bold")
    table.add_column("within subjects", justify="right")
    table.add_column("train", justify="right")
    table.add_column("best AUs", justify="left")
    for row in report["blocks"]:
        best = sorted(((v, k) for k, v in row["test_auc_per_au"].items() if np.isfinite(v)), reverse=True)[:3]
        table.add_row("patch embedding" if row["block"] == 0 else str(row["block"]), pct(row["test_auc"]),
                      pct(row["test_auc_within_subjects"]), pct(row["train_auc"]), ", ".join(f"{k} {pct(v)}" for v, k in best))
    Console().print(table)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
