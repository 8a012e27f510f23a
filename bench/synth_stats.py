"""Measured gates of the synthetic AU corpus (issue 4), printed as tables.

1. Occurrence rates against BP4D's table (DESIGN.md section 4) and conditional rates of the
   co-occurring pairs, on a large sample of timelines with the model's own thresholds (no
   rendering needed: the labels are the timelines), and on the rendered corpus of step 4, whose
   thresholds make_corpus calibrates on the corpus itself.
2. Identity dominance on aligned crops: neutral-vs-neutral between subjects against
   neutral-vs-apex within a subject (every AU at intensity 5).
3. Rendering speed on one core (frames per second) at 112 and 224 pixels, video and crop framing.
4. A rendered corpus (BP4D layout, mp4): throughput including video encoding, then CenterFace
   (aucli.faces.detect) on its decoded frames: share of frames with a face, landmark error.

Run:  python bench/synth_stats.py            (about 3-4 minutes on one core)
      python bench/synth_stats.py --quick    (smaller samples, about a minute)
      python bench/synth_stats.py --json     (machine-readable)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from aucli.synth.events import TASKS, TimelineModel
from benchlib.synth_gates import conditional_table, identity_dominance, occurrence_table


def timeline_statistics(subjects: int, frames: int, seed: int) -> tuple[np.ndarray, float]:
    model = TimelineModel(tuple(TASKS))
    rng = np.random.default_rng(seed)
    levels = []
    started = time.perf_counter()
    for _ in range(subjects):
        effects = model.subject_effects(rng)
        for task in TASKS:
            levels.append(model.sample(rng, frames, task, effects).levels)
    return np.concatenate(levels), time.perf_counter() - started


def render_speed(size: int, framing: str, n: int = 200) -> float:
    from aucli.synth.recording import SUPERSAMPLE, subject_identity
    from aucli.synth.face import FaceModel
    from aucli.synth.render import FaceRenderer, Framing
    from aucli.synth.scene import compose_frame, sample_nuisance, sample_scene

    rng = np.random.default_rng(0)
    identity = subject_identity(0, 0, "F001")
    fr = Framing.video(size) if framing == "video" else Framing.crop(size)
    renderer = FaceRenderer(FaceModel(identity, fr.px_per_unit * SUPERSAMPLE))
    scene = sample_scene(rng, identity, size, framing=framing)
    nuisance = sample_nuisance(rng, n, identity, size=size)
    model = TimelineModel()
    timeline = model.sample(rng, n, "T1", model.subject_effects(rng))
    started = time.process_time()
    for t in range(n):
        compose_frame(renderer, scene, nuisance, t, timeline.intensity[t])
    return n / (time.process_time() - started)


def decode_frames(path: Path, every: int) -> list[np.ndarray]:
    import av

    frames = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % every == 0:
                frames.append(frame.to_ndarray(format="rgb24"))
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller samples")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    quick = args.quick
    out: dict = {}
    say = (lambda *a: None) if args.json else print

    # 1. occurrence on timelines
    n_subj, n_frames = (60, 300) if quick else (250, 500)
    levels, seconds = timeline_statistics(n_subj, n_frames, args.seed)
    rows = occurrence_table(levels)
    out["timelines"] = {
        "frames": int(levels.shape[0]),
        "seconds": round(seconds, 2),
        "occurrence": {f"AU{r.au}": {"rate": round(r.rate, 4), "target": r.target} for r in rows},
        "max_abs_error": round(max(abs(r.error) for r in rows), 4),
        "conditional": {f"P(AU{b}|AU{a})": {"value": round(c, 4), "unconditional": round(u, 4)} for a, b, c, u in conditional_table(levels)},
    }
    say(f"\n1. Occurrence on {levels.shape[0]} timeline frames ({n_subj} subjects x 8 tasks x {n_frames}; {seconds:.1f} s), model thresholds, no calibration")
    say(f"{'AU':>5} {'target':>7} {'rate':>7} {'error':>7}")
    for r in rows:
        say(f"{'AU' + str(r.au):>5} {r.target:7.2f} {r.rate:7.3f} {r.error:+7.3f}")
    say(f"max |error| = {out['timelines']['max_abs_error']:.3f} (gate: 0.05)")
    for a, b, c, u in conditional_table(levels):
        say(f"P(AU{b}|AU{a}) = {c:.3f}  vs  P(AU{b}) = {u:.3f}  (lift {c / max(u, 1e-9):.2f})")

    # 2. identity dominance
    n_id = 6 if quick else 12
    started = time.perf_counter()
    dom = identity_dominance(n_id, seed=args.seed)
    out["identity"] = {
        "subjects": n_id,
        "between_subjects": round(dom.between_subjects, 3),
        "within_subject": round(dom.within_subject, 3),
        "ratio": round(dom.ratio, 2),
        "worst_au": max(dom.within_by_au, key=dom.within_by_au.get),
        "worst_ratio": round(dom.worst_ratio, 2),
        "within_by_au": {f"AU{k}": round(v, 3) for k, v in dom.within_by_au.items()},
    }
    say(f"\n2. Identity dominance ({n_id} subjects, aligned 112 px crops, {time.perf_counter() - started:.1f} s)")
    say(f"mean |neutral_i - neutral_j| = {dom.between_subjects:.2f};  mean |neutral - apex| = {dom.within_subject:.2f}  ->  ratio {dom.ratio:.1f} (gate: >= 2)")
    say(f"largest AU change: {out['identity']['worst_au']} {max(dom.within_by_au.values()):.2f}  ->  ratio {dom.worst_ratio:.1f}")
    say("per AU: " + ", ".join(f"AU{k} {v:.2f}" for k, v in dom.within_by_au.items()))

    # 3. speed
    out["speed_fps_one_core"] = {}
    say("\n3. Rendering speed, one core (CPU time; frames/s)")
    for size, framing in ((112, "video"), (112, "crop"), (224, "video")):
        fps = render_speed(size, framing, 120 if quick else 300)
        out["speed_fps_one_core"][f"{size}_{framing}"] = round(fps, 1)
        say(f"{size} px, {framing:5s} framing: {fps:7.1f} frames/s = {fps * 60:,.0f} frames/min")

    # 4. a rendered corpus, CenterFace
    from aucli.synth.corpus import CorpusConfig, make_corpus

    subjects, frames = (4, 40) if quick else (8, 100)
    with tempfile.TemporaryDirectory() as tmp:
        config = CorpusConfig(Path(tmp) / "corpus", subjects=subjects, frames=frames, size=224, seed=args.seed)
        started = time.process_time()
        manifest = make_corpus(config)
        cpu = time.process_time() - started
        total = manifest.data["statistics"]["frames"]
        rendered = occurrence_table(manifest.arrays["levels"])
        out["corpus"] = {
            "frames": total,
            "size": 224,
            "fps_with_encoding_one_core": round(total / cpu, 1),
            "occurrence_max_abs_error": round(max(abs(r.error) for r in rendered), 4),
        }
        say(f"\n4. Corpus: {subjects} subjects x 8 tasks x {frames} frames at 224 px: {total / cpu:.1f} frames/s with mp4 encoding (one core)")
        say(f"occurrence on these {total} frames (thresholds calibrated on the corpus): max |error| {out['corpus']['occurrence_max_abs_error']:.3f}")
        for a, b, c, u in conditional_table(manifest.arrays["levels"]):
            say(f"  P(AU{b}|AU{a}) = {c:.3f}  vs  P(AU{b}) = {u:.3f}")
        try:
            from aucli.faces.detect import make_detector
        except ImportError:
            say("aucli.faces.detect not available: detection gate skipped")
            out["detection"] = None
        else:
            detector = make_detector("centerface", threads=1)
            every = 5
            frames_all, truth_all, occ_all = [], [], []
            arrays = manifest.arrays
            for rec in manifest.recordings:
                decoded = decode_frames(manifest.root / rec["media"], every)
                start = rec["rows"][0]
                idx = start + np.arange(0, rec["n_frames"], every)[: len(decoded)]
                frames_all += decoded
                truth_all.append(arrays["landmarks"][idx])
                occ_all.append(arrays["occluded"][idx])
            from benchlib.synth_gates import detection_rate

            started = time.perf_counter()
            report = detection_rate(frames_all, np.concatenate(truth_all), np.concatenate(occ_all), detector)
            out["detection"] = {
                "frames": report.frames,
                "found": report.found,
                "rate": round(report.rate, 4),
                "median_landmark_error_iod": round(report.landmark_error, 4),
                "missed_with_occluder": report.missed_occluded,
            }
            say(f"CenterFace on every {every}th decoded frame: {report.found}/{report.frames} = {report.rate:.3f} (gate: >= 0.90); "
                f"missed with an occluder over the face: {report.missed_occluded}; median landmark error {report.landmark_error:.3f} interocular distances "
                f"({time.perf_counter() - started:.0f} s)")  # fmt: skip
    if args.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
