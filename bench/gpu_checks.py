"""Helpers of ``bench/gpu_checks.sh``: the environment's facts, and the report of all steps.

    python bench/gpu_checks.py env --device cuda            # JSON on stdout: versions, GPU, a bf16 matmul
    python bench/gpu_checks.py report WORK OUT_JSON         # gpu_checks.json from the steps; summary on stdout

``report`` reads ``WORK/steps.tsv`` (one line per step: name, exit code, seconds, timeout) and the
JSON files the steps wrote into ``WORK`` (env.json, moke.json, synth.json, preprocess.json,
train.json, predict.json); a file that is missing or broken is reported as such, never fatal, so the
report works after any step failed or timed out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

#: Step outputs in WORK, by step name.
STEP_FILES = {
    "env": "env.json",
    "moke": "moke.json",
    "synth": "synth.json",
    "preprocess": "preprocess.json",
    "train": "train.json",
    "predict": "predict.json",
}


def environment(device: str) -> dict[str, Any]:
    """Versions, the accelerator and a bf16 matmul rate (a sanity check that the device runs at speed)."""
    import numpy
    import torch

    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(),
        "numpy": numpy.__version__,
    }
    for module in ("timm", "h5py", "onnx", "onnxruntime", "av", "cv2", "skimage", "safetensors"):
        try:
            facts[module] = __import__(module).__version__
        except Exception as error:  # noqa: BLE001 - a missing package is a fact to report
            facts[module] = f"unavailable: {type(error).__name__}: {error}"
    try:
        import onnxruntime

        facts["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        pass
    try:
        from aucli.faces.detect import centerface_model_path

        facts["centerface_onnx"] = str(centerface_model_path())
    except Exception as error:  # noqa: BLE001
        facts["centerface_onnx"] = f"unavailable: {error}"
    import aucli

    facts["aucli"] = aucli.__version__
    facts["aucli_path"] = str(Path(aucli.__file__).parent)

    target = torch.device(device)
    if target.type == "cuda":
        if not torch.cuda.is_available():
            facts["error"] = "device cuda asked for, but torch.cuda.is_available() is False"
            return facts
        props = torch.cuda.get_device_properties(target)
        facts["gpu"] = {
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1),
            "multiprocessors": props.multi_processor_count,
            "bf16_supported": torch.cuda.is_bf16_supported(),
            "count": torch.cuda.device_count(),
        }
        side, dtype, reps = 8192, torch.bfloat16, 20
    else:
        side, dtype, reps = 512, torch.float32, 3
    a = torch.randn(side, side, device=target, dtype=dtype)
    b = torch.randn(side, side, device=target, dtype=dtype)
    (a @ b).sum().item()  # warm-up and a synchronisation
    start = time.perf_counter()
    for _ in range(reps):
        c = a @ b
    c.sum().item()
    seconds = time.perf_counter() - start
    facts["matmul"] = {"side": side, "dtype": str(dtype).replace("torch.", ""), "tflops": round(2 * side**3 * reps / seconds / 1e12, 3)}
    return facts


def read_steps(work: Path) -> list[dict[str, Any]]:
    steps = []
    path = work / "steps.tsv"
    if path.is_file():
        for line in path.read_text().splitlines():
            name, rc, seconds, timeout = (line.split("\t") + ["", "", "", ""])[:4]
            entry: dict[str, Any] = {
                "name": name,
                "exit": int(rc) if rc.lstrip("-").isdigit() else rc,
                "timeout_s": int(timeout) if timeout.isdigit() else None,
            }
            entry["seconds"] = float(seconds) if seconds else None
            entry["timed_out"] = entry["exit"] in (124, 137)
            steps.append(entry)
    return steps


def read_output(work: Path, name: str) -> Any:
    path = work / STEP_FILES[name]
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        return {"unreadable": f"{path.name}: {error}"}


def compact_synth(data: dict[str, Any] | None) -> dict[str, Any] | None:
    if not data or "unreadable" in data:
        return data
    return {k: data.get(k) for k in ("layout", "subjects", "recordings", "frames", "rendered", "render_seconds")}


def compact_preprocess(data: dict[str, Any] | None) -> dict[str, Any] | None:
    if not data or "unreadable" in data:
        return data
    labels = data.get("labels") or {}
    keep = {k: data.get(k) for k in ("sources", "frames", "faces", "seconds", "frames_per_second", "store_faces")}
    keep["labelled_faces"] = labels.get("matched_faces")
    keep["problems"] = (data.get("problems") or [])[:5]
    return keep


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The compact text summary of a report."""
    env, results = report.get("env") or {}, report["results"]
    gpu = (env.get("gpu") or {}).get("name") or "no GPU"
    lines = [
        (
            f"aucli GPU checks ({report['mode']} mode, device {report['device']}): {gpu}; torch {env.get('torch', '?')} "
            f"(CUDA {env.get('torch_cuda')}), python {env.get('python', '?')}, {env.get('cpu_count', '?')} CPUs; "
            f"{report['elapsed_s']} s of a {report['budget_s']} s budget"
        ),
        "step          exit   seconds  timeout",
    ]
    for step in report["steps"]:
        exit_text = "TIMEOUT" if step["timed_out"] else str(step["exit"])
        seconds = f"{step['seconds']:.1f}" if step["seconds"] is not None else "-"
        lines.append(f"  {step['name']:11s} {exit_text:>6s} {seconds:>9s} {step['timeout_s'] or '-':>8}")
    if env.get("matmul"):
        m = env["matmul"]
        lines.append(f"matmul   : {m['tflops']} TFLOP/s ({m['side']}^2 {m['dtype']})")
    moke = results.get("moke")
    if moke and "forward_ms" in moke:
        fwd = moke["forward_ms"]
        text = f"moke     : {moke['backbone']} batch {moke['batch']}, {moke['precision']}: no-grad forward ms plain {fwd.get('plain ViT')}, AUFormer {fwd.get('AUFormer')}"
        text += f" (x{moke['forward_ratio_to_plain']})" + (f", naive {fwd['naive loop']}" if "naive loop" in fwd else "")
        if "train_step_ms" in moke:
            step = moke["train_step_ms"]
            text += f"; train step ms AUFormer {step.get('AUFormer')} ({moke['train_images_per_s'].get('AUFormer')} img/s)"
            text += f", naive {step['naive loop']}" if "naive loop" in step else ""
        if moke.get("peak_memory_mib"):
            text += f"; peak MiB {moke['peak_memory_mib']}"
        lines.append(text)
    synth, pre = results.get("synth"), results.get("preprocess")
    if synth and "frames" in synth:
        text = f"data     : synth {synth['frames']} frames ({synth['recordings']} recordings) rendered in {synth['render_seconds']} s"
        if pre and "faces" in pre:
            text += f"; preprocess {pre['faces']} faces of {pre['frames']} frames, {pre['frames_per_second']} frames/s, {pre['labelled_faces']} labelled"
        lines.append(text)
    train = results.get("train")
    if train and "train" in train:
        t = train["train"]
        memory = (
            f"peak {t['peak_memory_gib']} GiB allocated ({t['peak_reserved_gib']} reserved)"
            if "peak_memory_gib" in t
            else f"peak RSS {t.get('peak_rss_gib')} GiB"
        )
        loader = (train.get("loader_only") or {}).get("images_per_s")
        lines.append(
            f"train    : {train['backbone']} ({train['backbone_weights']}), {train['aus']} AUs, {train['precision']}, batch {train['batch']}, "
            f"{train['workers']} workers: {t['images_per_s']} img/s steady ({t['step_ms']} ms/step over {t['timed_steps']} steps of {train['steps']}), "
            f"{memory}; loader alone {loader} img/s; trainer log {t['trainer_logged_img_per_s']} img/s; epoch end {train['epoch_end_s']} s"
        )
    predict = results.get("predict")
    if predict and "model_only" in predict:
        m, x, e = predict["model_only"], predict["extract_only"], predict["end_to_end"]
        memory = f", peak {m['peak_memory_gib']} GiB" if "peak_memory_gib" in m else ""
        lines.append(
            f"predict  : {predict['backbone']} {predict['precision']}: model only {m['images_per_s']} img/s (batch {m['batch']}{memory}); "
            f"CenterFace extraction {x['frames_per_s']} frames/s on {predict['detector_device']}; end to end {e['frames_per_s']} frames/s"
        )
    for name, value in results.items():
        if isinstance(value, dict) and "unreadable" in value:
            lines.append(f"{name:9s}: output unreadable ({value['unreadable']})")
    failed = [s["name"] for s in report["steps"] if s["exit"] != 0]
    if not report["steps"]:
        lines.append("no step ran")
    else:
        lines.append("all steps passed" if not failed else f"FAILED or skipped: {', '.join(failed)} (details in gpu_checks.txt)")
    return lines


def report(work: Path, out_json: Path, mode: str, device: str, budget: int, started: float) -> list[str]:
    results = {name: read_output(work, name) for name in STEP_FILES if name != "env"}
    results["synth"] = compact_synth(results["synth"])
    results["preprocess"] = compact_preprocess(results["preprocess"])
    data = {
        "mode": mode,
        "device": device,
        "budget_s": budget,
        "elapsed_s": round(time.time() - started, 1),
        "steps": read_steps(work),
        "env": read_output(work, "env"),
        "results": results,
    }
    data["summary"] = summary_lines(data)
    tmp = out_json.with_name(out_json.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, out_json)
    return data["summary"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    env = commands.add_parser("env", help="versions and device facts as JSON")
    env.add_argument("--device", default="cuda")
    rep = commands.add_parser("report", help="write the JSON report; print the summary with --print")
    rep.add_argument("work", type=Path)
    rep.add_argument("out_json", type=Path)
    rep.add_argument("--mode", default="gpu")
    rep.add_argument("--device", default="cuda")
    rep.add_argument("--budget", type=int, default=0)
    rep.add_argument("--started", type=float, default=time.time(), help="epoch seconds at the script's start")
    rep.add_argument("--print", action="store_true", help="print the summary")
    args = parser.parse_args(argv)
    if args.command == "env":
        facts = environment(args.device)
        print(json.dumps(facts, indent=2))
        sys.exit(1 if "error" in facts else 0)
    lines = report(args.work, args.out_json, args.mode, args.device, args.budget, args.started)
    if args.print:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
