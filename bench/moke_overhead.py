"""What the MoKE experts cost: AUFormer vs the frozen timm ViT alone vs the naive loop-per-expert form.

One run, same inputs, same backbone object:

- no-grad forward: plain ViT (A), AUFormer grouped form (B), naive loop-per-expert reference (C),
  interleaved A B C A B C ... for ``--reps`` rounds; medians and ratios;
- training step (forward, BCE on main and expert logits, backward, AdamW step): AUFormer and the
  naive form, interleaved; medians and the ratio to the plain ViT forward;
- peak memory of one AUFormer training step against one plain ViT forward: on CPU the peak RSS
  growth during the call, each measured in a fresh process (so that no earlier call's cached memory
  hides it); on CUDA ``torch.cuda.max_memory_allocated`` growth.

Weights are random (timing does not depend on them); the experts' up-projections are set non-zero
so that nothing is skipped. On CUDA everything runs under bf16 autocast.

Examples::

    python bench/moke_overhead.py                       # ViT-B/16, batch 8, 12 AUs, d = 8, CPU
    python bench/moke_overhead.py --reps 3 --no-naive   # a quick look
    python bench/moke_overhead.py --device cuda --batch 128 --json-out moke.json
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from aucli.aus import au_name  # noqa: E402
from aucli.config import ModelConfig, MoKEConfig  # noqa: E402
from aucli.model import AUFormer  # noqa: E402
from benchlib.moke_reference import ReferenceAUFormer  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="vit_base_patch16_224")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--aus", type=int, default=12, help="number of AUs (experts per group)")
    parser.add_argument("--bottleneck", type=int, default=8)
    parser.add_argument("--reps", type=int, default=10, help="interleaved repetitions per measurement")
    parser.add_argument("--train-reps", type=int, default=None, help="repetitions of the training step (default: --reps)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--no-naive", action="store_true", help="skip the loop-per-expert form (slow)")
    parser.add_argument("--no-train", action="store_true", help="skip the training-step timing")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes")
    parser.add_argument("--grad-checkpointing", action="store_true", help="AUFormer with gradient checkpointing")
    parser.add_argument("--json-out", metavar="FILE", help="also write the figures to FILE as JSON")
    parser.add_argument("--probe-memory", choices=["plain", "train"], help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> tuple[AUFormer, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    cfg = ModelConfig(
        backbone=args.backbone,
        au_names=[au_name(i) for i in range(1, args.aus + 1)],
        moke=MoKEConfig(bottleneck=args.bottleneck),
        grad_checkpointing=args.grad_checkpointing,
    )
    model = AUFormer(cfg).to(args.device)
    with torch.no_grad():
        for group in [*model.attn_experts, *model.mlp_experts]:
            group.up_weight.normal_(0.0, 0.02)
            group.up_bias.normal_(0.0, 0.02)
    size = model.data_config["input_size"]
    images = torch.randn(args.batch, *size, device=args.device)
    targets = (torch.rand(args.batch, args.aus, device=args.device) < 0.3).float()
    return model, images, targets


def autocast(device: str) -> contextlib.AbstractContextManager:
    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved(functions: dict[str, Callable[[], object]], reps: int, device: str) -> dict[str, list[float]]:
    """Seconds per call for each function, run A B C A B C ... after one warm-up call each."""
    for fn in functions.values():
        fn()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(reps):
        for name, fn in functions.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def training_step(model: torch.nn.Module, forward: Callable[[], tuple], optimizer: torch.optim.Optimizer, targets: torch.Tensor, device: str) -> Callable[[], None]:
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device):
            logits, expert_logits = forward()
            loss = bce(logits.float(), targets)
            if expert_logits is not None:
                loss = loss + bce(expert_logits.float(), targets[:, None].expand_as(expert_logits))
        loss.backward()
        optimizer.step()

    return step


def peak_rss_growth(fn: Callable[[], object]) -> int:
    """Bytes: the highest resident set size while ``fn`` runs, minus the size just before."""
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * page

    gc.collect()
    before = rss()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    fn()
    done.set()
    sampler.join()
    return max(peak[0], rss()) - before


def probe_memory(args: argparse.Namespace) -> int:
    """Peak memory growth of one call (plain ViT forward or AUFormer training step), in bytes."""
    model, images, targets = build(args)
    if args.probe_memory == "plain":

        def run() -> None:
            with torch.no_grad(), autocast(args.device):
                model.backbone(images)

    else:
        optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
        model.train()
        run = training_step(model, lambda: (lambda o: (o.logits, o.expert_logits))(model(images)), optimizer, targets, args.device)
    if torch.device(args.device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    return peak_rss_growth(run)


def processor_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median_ms(values: list[float]) -> float:
    return 1000.0 * statistics.median(values)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.probe_memory:
        print(json.dumps({"peak_bytes": probe_memory(args)}))
        return

    model, images, targets = build(args)
    vit = model.backbone
    naive = None if args.no_naive else ReferenceAUFormer(model)
    import timm

    cuda = torch.device(args.device).type == "cuda"
    device_name = torch.cuda.get_device_name(args.device) if cuda else processor_name()
    print(
        f"torch {torch.__version__}, timm {timm.__version__}, {device_name}, device {args.device}, "
        f"threads {torch.get_num_threads()}, {args.backbone}, batch {args.batch}, {args.aus} AUs, d = {args.bottleneck}, "
        f"{args.reps} interleaved reps" + (", bf16 autocast" if cuda else "")
    )
    summary = model.parameter_summary()
    figures: dict = {
        "torch": torch.__version__, "timm": timm.__version__, "device": args.device, "device_name": device_name,
        "threads": torch.get_num_threads(), "backbone": args.backbone, "batch": args.batch, "aus": args.aus,
        "bottleneck": args.bottleneck, "reps": args.reps, "precision": "bf16 autocast" if cuda else "fp32",
        "trainable_parameters": summary["trainable"], "frozen_parameters": summary["frozen"],
    }
    print(f"trainable parameters {summary['trainable']:,} ({summary['trainable_percent']:.2f}%), frozen {summary['frozen']:,}")

    model.eval()
    forwards: dict[str, Callable[[], object]] = {
        "plain ViT": lambda: vit(images),
        "AUFormer": lambda: model(images),
    }
    if naive is not None:
        forwards["naive loop"] = lambda: naive(images)
    with torch.no_grad(), autocast(args.device):
        times = interleaved(forwards, args.reps, args.device)
    plain = median_ms(times["plain ViT"])
    print("\nno-grad forward        median ms   ratio to plain ViT")
    for name, values in times.items():
        print(f"  {name:20s} {median_ms(values):10.1f}   {median_ms(values) / plain:6.3f}")
    if naive is not None:
        print(f"  naive / AUFormer       {median_ms(times['naive loop']) / median_ms(times['AUFormer']):6.2f}")
    ratio = median_ms(times["AUFormer"]) / plain
    figures["forward_ms"] = {name: round(median_ms(values), 2) for name, values in times.items()}
    figures["forward_ratio_to_plain"] = round(ratio, 3)
    figures["forward_images_per_s"] = {name: round(args.batch / statistics.median(values), 1) for name, values in times.items()}
    print(f"AUFormer / plain ViT no-grad forward: {ratio:.3f} (bar for vit_base_patch16_224, batch 8, 12 AUs, d = 8 on CPU: 1.35; goal 1.2)")

    if not args.no_train:
        model.train()
        steps: dict[str, Callable[[], object]] = {
            "AUFormer": training_step(
                model, lambda: (lambda o: (o.logits, o.expert_logits))(model(images)), torch.optim.AdamW(model.trainable_parameters(), lr=1e-4), targets, args.device
            )
        }
        if naive is not None:
            naive_params = [p for p in naive.parameters() if p.requires_grad] + list(model.head.parameters())
            steps["naive loop"] = training_step(naive, lambda: naive(images), torch.optim.AdamW(naive_params, lr=1e-4), targets, args.device)
        step_times = interleaved(steps, args.train_reps or args.reps, args.device)
        print("\ntraining step          median ms   ratio to plain ViT forward")
        for name, values in step_times.items():
            print(f"  {name:20s} {median_ms(values):10.1f}   {median_ms(values) / plain:6.3f}")
        figures["train_step_ms"] = {name: round(median_ms(values), 2) for name, values in step_times.items()}
        figures["train_images_per_s"] = {name: round(args.batch / statistics.median(values), 1) for name, values in step_times.items()}

    if not args.no_memory:
        peaks = {}
        for probe in ("plain", "train"):
            command = [sys.executable, os.path.abspath(__file__), *(argv if argv is not None else sys.argv[1:]), "--probe-memory", probe]
            run = subprocess.run(command, check=False, capture_output=True, text=True)
            if run.returncode != 0:  # e.g. out of memory: report it, keep the timings
                print(f"\nmemory probe {probe!r} failed (exit {run.returncode}):\n{run.stderr.strip()[-2000:]}", file=sys.stderr)
                figures.setdefault("memory_probe_errors", {})[probe] = run.stderr.strip().splitlines()[-1:] or [f"exit {run.returncode}"]
                continue
            peaks[probe] = json.loads(run.stdout.strip().splitlines()[-1])["peak_bytes"]
        what = "CUDA max_memory_allocated growth" if cuda else "peak RSS growth, fresh process each"
        figures["peak_memory_mib"] = {name: round(value / 2**20, 1) for name, value in peaks.items()}
        figures["peak_memory_measure"] = what
        if len(peaks) == 2:
            print(f"\npeak memory ({what})")
            print(f"  plain ViT forward      {peaks['plain'] / 2**20:10.1f} MiB")
            print(f"  AUFormer train step    {peaks['train'] / 2**20:10.1f} MiB   ratio {peaks['train'] / max(peaks['plain'], 1):.1f}")

    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)
    if "memory_probe_errors" in figures:
        sys.exit(1)


if __name__ == "__main__":
    main()
