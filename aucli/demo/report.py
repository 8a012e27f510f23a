"""The demo's one report, ``DIR/report/index.html``, with its pictures beside it.

Sections: the figures that matter (held-out F1 against calling every AU present and a linear
probe, AUC, the base model before fine-tuning, the audit's precision); training curves; F1 per AU;
one held-out video's timeline against its ground truth, with the labelled clip; the audit's top
flags with their faces. The page checks on load that every picture loaded and says so at the end
(``#self-check``), which is what the report test reads back from a headless browser.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aucli.demo.figures import VideoTrack, per_au_f1, timeline, training_curves, video_clip

if TYPE_CHECKING:
    from aucli.demo.config import DemoConfig, DemoResult
    from aucli.demo.labels_audit import AuditCheck

__all__ = ["write_report", "video_track"]

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px auto; color: #222; max-width: 1180px; }
h1 { font-size: 24px; margin-bottom: 2px; } h2 { font-size: 18px; margin-top: 30px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0 14px; }
th, td { border: 1px solid #ddd; padding: 3px 9px; text-align: right; } th { background: #f4f4f4; }
td:first-child, th:first-child { text-align: left; } td.reason { text-align: left; max-width: 420px; font-size: 12px; }
.lead td { font-size: 15px; } .good { color: #0a7a20; font-weight: 600; } .bad { color: #b3261e; font-weight: 600; }
.note { color: #666; font-size: 12px; } img { max-width: 100%; } .face { width: 72px; height: 72px; }
.row { display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap; }
#self-check { margin-top: 30px; font-size: 12px; color: #666; }
"""

_SELF_CHECK = """
<script>
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (img) { return !(img.complete && img.naturalWidth > 0); });
  var line = document.getElementById('self-check');
  line.setAttribute('data-images', String(images.length));
  line.setAttribute('data-broken', String(broken.length));
  line.textContent = broken.length ? 'Pictures that did not load: ' + broken.map(function (i) { return i.getAttribute('src'); }).join(', ')
                                   : 'All ' + images.length + ' pictures loaded.';
});
</script>
"""


def _pct(value: float | None) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{100 * value:.1f}"


def _table(header: list[str], rows: list[list[str]], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><tr>{head}</tr>{body}</table>'


def _img(name: str, alt: str, css: str = "") -> str:
    return f'<img src="{html.escape(name)}" alt="{html.escape(alt)}" class="{css}"/>'


def video_track(result: DemoResult, manifest, au_names: list[str], thresholds: np.ndarray) -> VideoTrack:
    """The first held-out subject's first video: its stored faces, predicted scores and ground truth."""
    from aucli.engine.predict.tables import read_table
    from aucli.aus import openface_column
    from aucli.store import CorpusStore

    recording = next(r for r in manifest.recordings if r["subject"] == result.test_subjects[0])
    media = manifest.root / recording["media"]
    table_path = next(result.predictions.rglob(f"{media.stem}.csv"))
    table = read_table(table_path)
    found = (table["success"] == 1) & (table["face_id"] == 0)
    by_frame = {int(f): i for i, f in enumerate(table["frame"]) if found[i]}
    with CorpusStore.open(result.store) as opened:
        sources = opened.source_table(latest=True)
        source = int(np.flatnonzero(sources["key"] == media.name)[0])
        faces = opened.face_table(["source", "frame", "track"])
        rows = np.flatnonzero((faces["source"] == sources["index"][source]) & (faces["track"] == 0))
        rows = np.array([r for r in rows if int(faces["frame"][r]) in by_frame], dtype=np.int64)
        truth = opened.read_labels("synth_clean", au_names=au_names).occurrence[rows]
        crops = opened.images(rows)
        frames = faces["frame"][rows].astype(np.int64)
    picked = [by_frame[int(f)] for f in frames]
    probs = np.stack([table[openface_column(a, "p")][picked] for a in au_names], axis=1)
    decisions = np.stack([table[openface_column(a, "c")][picked] for a in au_names], axis=1)
    return VideoTrack(name=media.name, frames=frames, crops=crops, probs=probs, decisions=decisions, truth=truth,
                      au_names=list(au_names), thresholds=np.asarray(thresholds, dtype=float), fps=float(manifest.data["fps"]))


def _lead(result: DemoResult, audit: AuditCheck | None) -> str:
    gain = result.gain_over_all_present
    rows = [
        ["AUFormer, fine-tuned (held-out subjects)", f'<span class="{"good" if gain > 0 else "bad"}">{_pct(result.mean_f1)}</span>',
         _pct(result.mean_auc)],
        ["calling every AU present", _pct(result.all_present_f1), "50.0"],
    ]
    if result.linear_f1 is not None:
        rows.append(["linear probe on the same backbone, same budget", _pct(result.linear_f1), "-"])
    if result.base_f1 is not None:
        rows.append(["the base checkpoint before fine-tuning", _pct(result.base_f1), _pct(result.base_auc)])
    text = _table(["model", "mean F1 %", "mean AUC %"], rows, "lead")
    text += (f'<p>Fine-tuning beats calling every AU present by <b>{100 * gain:+.1f}</b> F1 points on '
             f'{len(result.test_subjects)} subjects it never trained on ({", ".join(result.test_subjects)}), '
             f"scored against their labels as the coders wrote them.</p>")
    if audit is not None:
        text += (f"<p>Audit: of the {audit.top_k} best-ranked flags, <b>{audit.hits}</b> point at labels that are truly wrong "
                 f"(precision {_pct(audit.precision)}%), where a label checked at random is wrong {_pct(audit.base_rate)}% of "
                 f"the time ({audit.wrong_labels:,} of {audit.labels_judged:,} labels).</p>")
    return text


def _audit_section(folder: Path, result: DemoResult, audit: AuditCheck | None) -> str:
    from PIL import Image

    from aucli.store import CorpusStore

    if audit is None:
        return "<h2>Audit</h2><p>Not run: the audit needs a model that never saw this corpus (run the demo with a --base checkpoint).</p>"
    with CorpusStore.open(result.store) as opened:
        crops = opened.images([f.row for f in audit.top]) if audit.top else []
    rows = []
    for flag, crop in zip(audit.top, crops):
        name = f"flag_{flag.rank:02d}.png"
        Image.fromarray(crop).save(folder / name)
        verdict = '<span class="good">wrong label</span>' if flag.is_error else '<span class="bad">label was right</span>'
        rows.append([str(flag.rank), _img(name, f"flag {flag.rank}", "face"), html.escape(flag.source), html.escape(flag.frames),
                     html.escape(flag.au), str(flag.label), f"{flag.peak_p:.2f}", f"{flag.score:.3f}", verdict,
                     f'<span class="reason">{html.escape(flag.reason)}</span>'])
    text = (f"<h2>Audit: the labels most likely wrong</h2><p>{audit.n_flags} flags on {audit.labels_judged:,} labels; "
            f"judge: <code>{html.escape(Path(audit.judge).name)}</code>, calibrated per AU over subject groups. "
            f"The last column but one compares each flag with the corpus's noise manifest (the labels that "
            f"<code>aucli synth --noise</code> changed): a flag is a wrong label when at least half of the labels it covers were changed.</p>")
    return text + _table(["#", "face", "video", "frames", "AU", "label", "p", "score", "against the truth", "why"], rows)


def write_report(result: DemoResult, *, fold, linear, base: dict[str, Any] | None, audit: AuditCheck | None, manifest,
                 config: DemoConfig) -> Path:
    """Write ``result.report`` and its pictures; returns the page's path."""
    from aucli.model.checkpoint import read_checkpoint_metadata

    folder = result.report.parent
    folder.mkdir(parents=True, exist_ok=True)
    meta = read_checkpoint_metadata(fold.checkpoint)
    au_names = list(meta["au_names"])
    runs = {"fine-tuned": fold.folder}
    if linear is not None:
        runs["linear"] = linear.folder
    training_curves(runs, folder / "training.png")
    series = {"fine-tuned": fold.test.f1}
    if base is not None:
        series["base"] = [base["f1"][a] for a in au_names]
    if linear is not None:
        series["linear"] = linear.test.f1
    series["all present"] = 2 * np.asarray(fold.test.rate, dtype=float) / (1 + np.asarray(fold.test.rate, dtype=float))
    # an AU without positives among the held-out faces has no F1 (NaN; null once read back from JSON)
    series = {label: np.asarray(values, dtype=float) for label, values in series.items()}
    per_au_f1(au_names, series, folder / "per_au_f1.png")
    track = video_track(result, manifest, au_names, np.asarray(meta["thresholds"], dtype=float))
    timeline(track, folder / "timeline.png")
    video_clip(track, folder / "clip.gif")

    per_au_rows = [[a, *[_pct(float(v[i])) for v in series.values()]] for i, a in enumerate(au_names)]
    thresholds = ", ".join(f"{a} {t:.2f}" for a, t in zip(au_names, meta["thresholds"]))
    seconds = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>aucli demo report</title><style>{_CSS}</style></head><body>
<h1>aucli demo</h1>
<p class="note">{result.frames:,} rendered frames of {config.subjects} synthetic subjects ({config.noise} label noise, seed {config.seed}),
{result.faces:,} faces stored in <code>{html.escape(str(result.store))}</code>; fold 1: AUFormer
{"fine-tuned from <code>" + html.escape(config.base) + "</code>" if config.fine_tunes else "trained from zero"}; {html.escape(seconds)}.</p>
{_lead(result, audit)}
<h2>Training</h2>{_img("training.png", "training curves")}
<p class="note">Validation subjects (a quarter of the training subjects) pick the best evaluation. An AU is detected when its probability reaches the fine-tuned checkpoint's threshold for it: {html.escape(thresholds)}.</p>
<h2>F1 per AU on the held-out subjects</h2>{_img("per_au_f1.png", "F1 per AU")}
{_table(["AU", *[f"{k} F1 %" for k in series]], per_au_rows)}
<h2>One held-out video: {html.escape(track.name)}</h2>
<div class="row">{_img("clip.gif", "labelled clip")}
<p class="note">Each bar is the fine-tuned model's probability for that AU on this frame, filled dark when it is
over the AU's threshold (the red tick); beside it, what was rendered.</p></div>
{_img("timeline.png", "timeline")}
{_audit_section(folder, result, audit)}
<p id="self-check">Checking the pictures...</p>
{_SELF_CHECK}
</body></html>
"""
    result.report.write_text(page, encoding="utf-8")
    return result.report
