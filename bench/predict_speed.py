"""Predict speed: model-only images/s and end-to-end frames/s of ``aucli predict``, in one run.

    python bench/predict_speed.py [--model vitb|tiny] [--device cpu|cuda] [--batch N] [--reps N]
                                  [--frames N] [--size WxH] [--threads N] [--workers N] [--json]

The model is an AUFormer with random weights saved as a real checkpoint (so the whole load path
runs): ``vitb`` (default) is ViT-B/16 at 224 px with the 12 BP4D AUs (``vit_base_patch16_224``,
MoKE bottleneck 8); ``tiny`` a 2-block, 32-px test ViT. The script then measures, in one process:

1. model only: ``Predictor.probabilities`` on batches of random ``(B, 3, H, W)`` uint8 model views
   (normalisation, host-to-device copy, bf16 autocast on GPU / fp32 on CPU, forward, sigmoid), after
   one warm-up batch; images/s (and peak GPU memory on CUDA);
2. face extraction only: ``aucli.faces.extract_faces`` over the bench video (CenterFace at the
   defaults: 320 px detect width, every 2nd frame), frames/s;
3. end to end: ``aucli.engine.predict.predict_sources`` on the same video (extraction and model
   overlapping, one CSV table written), frames/s over the whole call.

The video is written by the script: skimage's astronaut photo on a plain backdrop, 640x360 at 25
fps by default, the face moving and growing, no face on 1 frame in 10. End to end is bounded by the
slower of (1) and (2): on a CPU the model, with a GPU the face detector (run on the CPU unless
onnxruntime has its CUDA provider). Figures mean something only on an otherwise idle machine.

GPU: ``python bench/predict_speed.py --device cuda --batch 256`` (a 500-frame video by default).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchlib.media import write_bench_video  # noqa: E402

MODELS = {
    "vitb": {"backbone": "vit_base_patch16_224", "backbone_overrides": {}, "img_size": 224, "aus": "bp4d"},
    "tiny": {
        "backbone": "test_vit",
        "backbone_overrides": {"depth": 2, "embed_dim": 32, "num_heads": 2, "patch_size": 8},
        "img_size": 32,
        "aus": "AU1,AU2,AU4,AU12",
    },
}


def save_random_checkpoint(folder: Path, model_name: str) -> Path:
    import torch

    from aucli.aus import parse_au_list
    from aucli.config import ModelConfig
    from aucli.model import build_model
    from aucli.model.checkpoint import save_checkpoint

    spec = MODELS[model_name]
    torch.manual_seed(0)
    config = ModelConfig(
        backbone=spec["backbone"],
        backbone_overrides=dict(spec["backbone_overrides"]),
        img_size=spec["img_size"],
        au_names=parse_au_list(spec["aus"]),
    )
    model = build_model(config, weights="random")
    with torch.no_grad():
        for param in model.trainable_parameters():
            param.normal_(0, 0.02)
    _, meta = save_checkpoint(folder / f"bench-{model_name}", model.eval())
    return meta


def model_only(predictor, batch: int, reps: int) -> dict:
    import torch

    side = predictor.image_size
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, side, side), dtype=torch.uint8, generator=generator)
    predictor.probabilities(images)  # warm-up (kernels, autocast caches)
    cuda = predictor.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(reps):
        predictor.probabilities(images)  # returns numpy: synchronised
    seconds = time.perf_counter() - start
    result = {"batch": batch, "reps": reps, "seconds": round(seconds, 3), "images_per_s": round(batch * reps / seconds, 1)}
    if cuda:
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="vitb")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, auto")
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: 8 on CPU, 256 on GPU)")
    parser.add_argument("--reps", type=int, default=None, help="timed model batches (default: 3 on CPU, 20 on GPU)")
    parser.add_argument(
        "--frames",
        type=int,
        default=None,
        help="frames of the bench video (default: 500 on GPU, 100 for tiny, 24 for vitb on CPU)",
    )
    parser.add_argument("--size", default="640x360", help="bench video size WxH")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--workers", type=int, default=1, help="face extraction processes (predict --workers)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from aucli.cli.options import detector_device
    from aucli.engine.predict import Predictor, predict_sources
    from aucli.faces import FaceOptions, extract_faces
    from aucli.media import discover_sources

    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="aucli-predict-bench-") as tmp:
        folder = Path(tmp)
        tick = time.perf_counter()
        checkpoint = save_random_checkpoint(folder, args.model)
        predictor = Predictor(checkpoint, device=args.device, precision=args.precision)
        load_seconds = time.perf_counter() - tick
        gpu = predictor.device.type == "cuda"
        batch = args.batch or (256 if gpu else 8)
        reps = args.reps or (20 if gpu else 3)
        model = model_only(predictor, batch, reps)

        n_frames = args.frames or (500 if gpu else 100 if args.model == "tiny" else 24)
        video = folder / "bench.mp4"
        with_face = write_bench_video(video, n_frames, width, height)
        options = FaceOptions(detector="centerface", device=detector_device("auto") if gpu else "cpu")
        source = discover_sources([video]).sources[0]
        tick = time.perf_counter()
        extracted = list(extract_faces(source, options))
        extract_seconds = time.perf_counter() - tick
        found = sum(1 for r in extracted if r.faces)
        del extracted

        summary = predict_sources(
            [video], predictor, folder / "out", face_options=options, batch_size=batch, workers=args.workers, show_progress=False
        )
        end_to_end = {
            "frames": summary.frames,
            "faces": summary.faces,
            "seconds": round(summary.seconds, 3),
            "frames_per_s": round(summary.frames / summary.seconds, 1),
            "model_seconds": round(summary.model_seconds, 3),
        }
    figures = {
        "model": args.model,
        "backbone": MODELS[args.model]["backbone"],
        "aus": len(predictor.au_names),
        "image_size": predictor.image_size,
        "device": str(predictor.device),
        "device_name": torch.cuda.get_device_name(predictor.device) if gpu else "cpu",
        "precision": "bf16" if predictor.uses_bf16 else "fp32",
        "torch_threads": args.threads,
        "detector_device": options.device,
        "checkpoint_save_and_load_seconds": round(load_seconds, 2),
        "model_only": model,
        "extract_only": {
            "frames": n_frames,
            "frames_with_face": with_face,
            "found": found,
            "seconds": round(extract_seconds, 3),
            "frames_per_s": round(n_frames / extract_seconds, 1),
        },
        "end_to_end": end_to_end,
        "video": f"{width}x{height}, {n_frames} frames",
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"AUFormer {figures['backbone']} @ {figures['image_size']}px, {figures['aus']} AUs, random weights; "
        f"{figures['device']} ({figures['device_name']}), {figures['precision']}, torch threads {args.threads}"
    )
    memory = f", peak GPU memory {model['peak_memory_gib']} GiB" if "peak_memory_gib" in model else ""
    print(f"model only      : {model['images_per_s']:8.1f} images/s  (batch {batch} x {reps} reps{memory})")
    extract = figures["extract_only"]
    print(
        f"face extraction : {extract['frames_per_s']:8.1f} frames/s  (CenterFace on {options.device}, {figures['video']}, "
        f"faces on {extract['found']}/{extract['frames_with_face']} face frames)"
    )
    print(
        f"end to end      : {end_to_end['frames_per_s']:8.1f} frames/s  ({end_to_end['frames']} frames, {end_to_end['faces']} faces, "
        f"model busy {end_to_end['model_seconds']:.1f} of {end_to_end['seconds']:.1f} s)"
    )


if __name__ == "__main__":
    main()
