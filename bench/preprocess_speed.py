"""Preprocess speed on one video: decode only, face extraction at the defaults, full preprocess.

    python bench/preprocess_speed.py [--frames 250] [--size 640x360] [--threads N] [--json] [--sweep]

The script writes its own test video (skimage's astronaut photo on a plain backdrop, 640x360 at
25 fps, the face moving and growing from a 100 px to a 180 px box, no face on 1 frame in 10),
then measures on that same file, in one run:

1. decode only: ``aucli.media.iter_frames`` (PyAV, RGB arrays), frames/s;
2. detection alone, per frame: CenterFace at the default detect width and at full size;
3. ``aucli.faces.extract_faces`` with CenterFace at the defaults (decode thread, batched
   detection on every 2nd frame at 320 px wide, carrying, alignment to 256x256), frames/s;
4. ``aucli.preprocess.run_preprocess`` into a temporary HDF5 store (the whole
   ``aucli preprocess`` without the CLI), frames/s, when that module exists;

and prints all figures and their ratios to decode-only. The machine must be otherwise idle for
the figures to mean anything; the goal is >= 25 frames/s for step 4 on 2 CPU cores.

``--sweep`` also runs extract_faces over detect widths x detect_every and compares each with
full-size detection on every frame: frames/s, frames where the reference finds a face and the
setting does not (must be 0), frames with an invented face, and the mean landmark distance to
the reference in units of the eye distance (the evidence for the defaults).
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


def timed(function) -> tuple[float, object]:
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def sweep(source, threads: int | None) -> list[dict]:
    """extract_faces at several detect widths and detect_every against full size on every frame."""
    import numpy as np

    from aucli.faces import FaceOptions, extract_faces, make_face_detector

    reference_options = FaceOptions(detector="centerface", detect_width=None, detect_every=1, threads=threads)
    reference = list(extract_faces(source, reference_options))
    rows = []
    for detect_width in (192, 256, 320, 480):
        options = FaceOptions(detector="centerface", detect_width=detect_width, threads=threads)
        detector = make_face_detector(options)
        for detect_every in (1, 2, 3, 4):
            options.detect_every = detect_every
            seconds, results = timed(lambda: list(extract_faces(source, options, detector=detector)))
            missed = sum(1 for r, g in zip(reference, results) if r.faces and not g.faces)
            invented = sum(1 for r, g in zip(reference, results) if g.faces and not r.faces)
            errors = [
                np.linalg.norm(r.faces[0].landmarks - g.faces[0].landmarks, axis=1).mean()
                / np.linalg.norm(r.faces[0].landmarks[0] - r.faces[0].landmarks[1])
                for r, g in zip(reference, results)
                if r.faces and g.faces
            ]
            rows.append(
                {
                    "detect_width": detect_width,
                    "detect_every": detect_every,
                    "fps": len(results) / seconds,
                    "missed": missed,
                    "invented": invented,
                    "landmark_error": float(np.mean(errors)),
                    "landmark_error_max": float(np.max(errors)),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=250, help="frames in the bench video (default 250, 10 s)")
    parser.add_argument("--size", default="640x360", help="video size WxH (default 640x360)")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: min(4, CPUs))")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--sweep", action="store_true", help="also compare detect widths x detect_every with full-size detection")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    from aucli.faces import FaceOptions, extract_faces, make_face_detector
    from aucli.media import discover_sources, iter_frames

    figures: dict[str, float | int | str | None] = {"frames": args.frames, "size": args.size, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="aucli-bench-") as tmp:
        video = Path(tmp) / "bench.mp4"
        figures["frames_with_face"] = write_bench_video(video, args.frames, width, height)
        source = discover_sources([video]).sources[0]
        options = FaceOptions(detector="centerface", threads=args.threads)
        detector = make_face_detector(options)
        full_size = make_face_detector(FaceOptions(detector="centerface", detect_width=None, threads=args.threads))

        # warm up: the first decode and the first session runs pay one-off costs
        frames = [f.image for f in iter_frames(video)]
        detector.detect(frames[:8])
        full_size.detect(frames[:2])

        seconds, count = timed(lambda: sum(1 for _ in iter_frames(video)))
        figures["decode_fps"] = count / seconds

        sample = frames[: min(64, len(frames))]
        seconds, _ = timed(lambda: [detector.detect(sample[i : i + 8]) for i in range(0, len(sample), 8)])
        figures["detect_ms_per_frame_default_width"] = 1000 * seconds / len(sample)
        seconds, _ = timed(lambda: [full_size.detect(sample[i : i + 8]) for i in range(0, len(sample), 8)])
        figures["detect_ms_per_frame_full_size"] = 1000 * seconds / len(sample)

        seconds, results = timed(lambda: list(extract_faces(source, options, detector=detector)))
        figures["extract_fps"] = len(results) / seconds
        figures["extract_frames_with_face"] = sum(bool(r.faces) for r in results)
        figures["extract_frames_interpolated"] = sum(1 for r in results if r.faces and not r.faces[0].detected)

        try:
            from aucli.preprocess import run_preprocess
        except ImportError:
            run_preprocess = None
        if run_preprocess is not None:
            store = Path(tmp) / "bench.h5"
            seconds, summary = timed(lambda: run_preprocess([video], store, face_options=options, detector=detector, show_progress=False))
            figures["preprocess_fps"] = args.frames / seconds
            figures["preprocess_faces_stored"] = getattr(summary, "store_faces", None)
        else:
            figures["preprocess_fps"] = None
        if args.sweep:
            figures["sweep"] = sweep(source, args.threads)

    decode = figures["decode_fps"]
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    for row in figures.get("sweep") or []:
        print(
            f"sweep width {str(row['detect_width']):>4} every {row['detect_every']}: {row['fps']:6.1f} frames/s, "
            f"missed {row['missed']}, invented {row['invented']}, landmark error {row['landmark_error']:.3f} "
            f"(max {row['landmark_error_max']:.3f}) eye distances"
        )
    print(f"bench video: {args.frames} frames {args.size}, {figures['frames_with_face']} with a face; {figures['cpus']} CPUs")
    print(f"decode only                  {decode:8.1f} frames/s")
    print(f"CenterFace at default width  {figures['detect_ms_per_frame_default_width']:8.1f} ms/frame (batches of 8)")
    print(f"CenterFace at full size      {figures['detect_ms_per_frame_full_size']:8.1f} ms/frame (batches of 8)")
    print(
        f"extract_faces (defaults)     {figures['extract_fps']:8.1f} frames/s   {figures['extract_fps'] / decode:6.3f} x decode"
        f"   ({figures['extract_frames_with_face']} frames with a face, {figures['extract_frames_interpolated']} interpolated)"
    )
    if figures["preprocess_fps"] is not None:
        print(
            f"full preprocess into HDF5    {figures['preprocess_fps']:8.1f} frames/s   {figures['preprocess_fps'] / decode:6.3f} x decode"
            f"   {figures['preprocess_fps'] / figures['extract_fps']:6.3f} x extract_faces"
        )
    else:
        print("full preprocess into HDF5    (aucli.preprocess.run_preprocess not available yet)")


if __name__ == "__main__":
    main()
