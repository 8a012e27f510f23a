"""A self-contained HTML report of an audit (every image embedded as base64 PNG).

Sections: what was audited and how; the thresholds (p*, missed, spurious per AU); flags per AU and
reason; score histograms; per AU a contact sheet of its best-ranked flags (the most contradicting
frame of each, label and probability drawn on); then a card per top flag: frames before, across
and after it, and the timeline of calibrated probability and label around it.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np

from aucli.audit.export import _position_index, flag_strip, sequence_frames
from aucli.audit.flags import CONTEXTS, KINDS
from aucli.audit.images import FLAG_COLOUR, grid, png_bytes, tile
from aucli.audit.run import AuditRecord

__all__ = ["write_report"]

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px; color: #222; max-width: 1400px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; margin: 16px 0 6px; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 12px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; } th { background: #f4f4f4; }
td:first-child, th:first-child { text-align: left; }
.meta { color: #555; font-size: 13px; } .meta td { border: none; padding: 1px 10px 1px 0; text-align: left; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 10px; margin: 12px 0; }
.card .title { font-weight: 600; margin-bottom: 4px; } .card .reason { color: #444; font-size: 13px; margin: 4px 0 8px; }
.missed { color: #b3470c; } .spurious { color: #1f5fa8; }
img { max-width: 100%; } .note { color: #666; font-size: 12px; }
.sheets { display: flex; flex-wrap: wrap; gap: 6px 28px; } .sheet h3 { margin-top: 8px; }
.row { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 16px; }
"""


def _img(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}"/>'


def _figure_png(fig) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _histograms(record: AuditRecord) -> bytes:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.15, top=0.9, wspace=0.25)
    flags = record.flags
    bins = np.linspace(0, 1, 41)
    for ax, kind in zip(axes[:2], KINDS):
        mine = flags.kind == kind
        stacks = [flags.score[mine & (flags.context == c)] for c in CONTEXTS]
        labels = [c for c, s in zip(CONTEXTS, stacks) if s.size]
        ax.hist([s for s in stacks if s.size] or [np.zeros(0)], bins=bins, stacked=True, label=labels or None)
        ax.set_title(f"{kind} flags by context ({int(mine.sum())})")
        ax.set_xlabel("flag score")
        ax.set_ylabel("flags")
        if labels:
            ax.legend(fontsize=8, loc="upper left")
    ax = axes[2]
    scores = record.frame_scores
    known = np.isfinite(scores)
    flagged = np.zeros(scores.shape, bool)
    position = _position_index(record)
    au_index = {a: i for i, a in enumerate(record.au_names)}
    for i in range(len(flags)):
        flagged[[position[int(r)] for r in flags.rows_of(i)], au_index[str(flags.au[i])]] = True
    ax.hist([scores[known & ~flagged], scores[known & flagged]], bins=bins, stacked=True, label=["not flagged", "flagged"],
            color=["#bbbbbb", "#e0501e"], log=True)
    ax.set_title("score of every judged label (frame, AU)")
    ax.set_xlabel("score")
    ax.set_ylabel("labels (log)")
    ax.legend(fontsize=8, loc="upper center")
    data = _figure_png(fig)
    plt.close(fig)
    return data


class _Timelines:
    """One reused matplotlib figure: calibrated p, raw p, label and flag span around a flag."""

    def __init__(self, record: AuditRecord, frames: np.ndarray, pad: int = 40) -> None:
        self.plt = _pyplot()
        self.record, self.frames, self.pad = record, frames, pad
        self.fig, self.ax = self.plt.subplots(figsize=(7.2, 2.3))
        self.fig.subplots_adjust(left=0.09, right=0.78, bottom=0.22, top=0.95)

    def png(self, positions: np.ndarray, k: int) -> bytes:
        record, frames, ax = self.record, self.frames, self.ax
        ax.clear()
        first, last = int(positions[0]), int(positions[-1])
        segment = record.segment
        window = np.arange(max(first - self.pad, 0), min(last + self.pad + 1, segment.size))
        window = window[segment[window] == segment[first]]
        x = frames[window]
        label = record.labels[window, k].astype(float)
        label[label < 0] = np.nan
        orange = np.array(FLAG_COLOUR) / 255
        ax.axvspan(frames[first] - 0.5, frames[last] + 0.5, color=orange, alpha=0.25, lw=0, label="flag")
        ax.axvspan(frames[first] - 0.5, frames[last] + 0.5, ymin=0.94, ymax=1.0, color=orange, lw=0)
        ax.fill_between(x, 0, np.nan_to_num(label), step="mid", color="#4a90d9", alpha=0.35, lw=0, label="label = 1")
        ax.step(x, label, where="mid", color="#1f5fa8", lw=1.0)
        ax.plot(x, record.raw_probs[window, k], color="#777", lw=0.9, ls=":", label="raw p")
        ax.plot(x, record.probs[window, k], color="#111", lw=1.5, marker=".", ms=3, label="calibrated p")
        ax.axhline(record.thresholds.missed[k], color="#b3470c", lw=0.8, ls="--", label="missed thr.")
        ax.axhline(record.thresholds.spurious[k], color="#1f5fa8", lw=0.8, ls="--", label="spurious thr.")
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlim(x.min() - 0.5, x.max() + 0.5)
        ax.set_xlabel("frame")
        ax.set_ylabel(f"{record.au_names[k]} p / label")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        return _figure_png(self.fig)

    def close(self) -> None:
        self.plt.close(self.fig)


def _contact_sheet(store, record: AuditRecord, au: str, n: int, size: int, position: dict[int, int]) -> bytes | None:
    flags = record.flags
    mine = np.flatnonzero(flags.au == au)[:n]
    if mine.size == 0:
        return None
    k = record.au_names.index(au)
    peak_rows = []
    for i in mine:
        positions = np.array([position[int(r)] for r in flags.rows_of(int(i))])
        q = record.probs[positions, k] if flags.kind[i] == "missed" else 1 - record.probs[positions, k]
        peak_rows.append(int(record.rows[positions[int(np.argmax(q))]]))
    crops = store.images(np.array(peak_rows))
    tiles = []
    for crop, i in zip(crops, mine):
        frames = f"{flags.frame_start[i]}" if flags.frame_start[i] == flags.frame_stop[i] else f"{flags.frame_start[i]}-{flags.frame_stop[i]}"
        source = Path(str(flags.source_key[i])).stem[-14:]
        tiles.append(tile(crop, [f"#{flags.rank[i]} y={int(flags.label[i])} p={flags.mean_p[i]:.2f}",
                                 f"score {flags.score[i]:.2f}", f"{flags.context[i]}", f"{source} {frames}"], size=size))
    return png_bytes(grid(tiles, columns=min(8, len(tiles))))


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(store, record: AuditRecord, path: str | Path, *, top: int = 30, per_au: int = 8, size: int = 112) -> Path:
    """Write the HTML report of ``record`` to ``path``.

    Args:
        store: an open :class:`aucli.store.CorpusStore` (face crops).
        top: flags shown as cards (strip and timeline).
        per_au: flags per AU on its contact sheet.
        size: face tile size in pixels.
    """
    from aucli.fileio import atomic_write_text

    path = Path(path)
    flags = record.flags
    position = _position_index(record)
    frames = sequence_frames(store, record)
    known = (record.labels == 0) | (record.labels == 1)
    source = record.source
    meta_rows = [
        ("store", str(record.store)), ("audit run", f"{record.name} ({record.created_at})"), ("label set", record.label_set),
        ("probabilities", ", ".join(f"{k}: {v}" for k, v in source.items() if v not in ("", None))),
        ("faces judged", f"{record.rows.size:,} ({int(known.sum()):,} known labels, {len(record.au_names)} AUs)"),
        ("flags", f"{len(flags):,} covering {int(flags.n_frames.sum()):,} labels"),
        ("temporal evidence", "on" if record.scoring.temporal else "off"),
        ("confusion pairs", ", ".join(f"{a}/{b}" for a, b in record.confusion_pairs) or "none"),
        ("checkpoints", ", ".join(f"{k}: {Path(v).parent.name}/{Path(v).name}" for k, v in record.checkpoints.items()) or "-"),
    ]
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>aucli audit {html.escape(record.name)}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>Audit {html.escape(record.name)}: label set {html.escape(record.label_set)}</h1>",
             "<table class='meta'>" + "".join(f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(v)}</td></tr>" for k, v in meta_rows) + "</table>"]

    th = record.thresholds
    parts.append("<h2>Thresholds</h2><p class='note'>On calibrated probabilities. missed: a 0 label is flagged at p &ge; the "
                 "threshold (MDWA's truncated region past the gradient peak p*); spurious: a 1 label is flagged at p &le; the "
                 "threshold (the mirror rule, this project's extension).</p>")
    parts.append(_table(["AU", "gamma", "p*", "missed: y=0, p >=", "spurious: y=1, p <="],
                        [[a, f"{th.gammas[i]:g}", f"{th.p_star[i]:.3f}", f"{th.missed[i]:.3f}", f"{th.spurious[i]:.3f}"]
                         for i, a in enumerate(th.au_names)]))

    counts = record.counts()
    rows = []
    for i, a in enumerate(record.au_names):
        c = counts[a]
        auc = record.skill[i] if i < record.skill.size and np.isfinite(record.skill[i]) else None
        rows.append([a, f"{int(known[:, i].sum()):,}", "-" if auc is None else f"{auc:.2f}", c["missed"], c["spurious"],
                     *[c[x] for x in CONTEXTS], c["confusion"], f"{c['frames']:,}", record.skipped.get(a, "")])
    parts.append("<h2>Flags per AU and reason</h2><p class='note'>AUC: how well the out-of-fold probabilities rank the "
                 f"audited labels; an AU below {record.min_auc:g} gets no flag (the model cannot judge it). swap: flags whose "
                 "labels look swapped with the partner AU's (confusion evidence).</p>")
    parts.append(_table(["AU", "labels judged", "AUC", "missed", "spurious", *CONTEXTS, "swap", "labels flagged", "note"], rows))
    parts.append("<h2>Score histograms</h2>" + _img(_histograms(record), "score histograms"))

    parts.append(f"<h2>Contact sheets: the best-ranked flags of each AU (up to {per_au})</h2>"
                 "<p class='note'>Each tile is the flag's most contradicting frame; its caption gives the rank, the label y, "
                 "the mean calibrated probability p over the flag, the score, the context, the source and the frames.</p>")
    sheets = []
    for a in record.au_names:
        sheet = _contact_sheet(store, record, a, per_au, size, position)
        if sheet is not None:
            sheets.append(f"<div class='sheet'><h3>{html.escape(a)}: {counts[a]['missed']} missed, "
                          f"{counts[a]['spurious']} spurious</h3>{_img(sheet, a)}</div>")
    parts.append(f"<div class='sheets'>{''.join(sheets)}</div>")

    n = min(top, len(flags))
    parts.append(f"<h2>Top {n} flags: frames and timelines</h2><p class='note'>Grey frames come before and after the flag, "
                 "orange ones lie in it. Timeline: calibrated p (black), raw p (dotted), label (blue area), flag (orange band), "
                 "missed and spurious thresholds (dashed).</p>")
    timelines = _Timelines(record, frames)
    for i in range(n):
        frames_text = (f"{flags.frame_start[i]}" if flags.frame_start[i] == flags.frame_stop[i]
                       else f"{flags.frame_start[i]}-{flags.frame_stop[i]}")
        strip = png_bytes(flag_strip(store, record, i, size=size, position=position, frames=frames))
        positions = np.array([position[int(r)] for r in flags.rows_of(i)])
        timeline = timelines.png(positions, record.au_names.index(str(flags.au[i])))
        parts.append(
            f"<div class='card'><div class='title'>#{flags.rank[i]} <span class='{flags.kind[i]}'>{flags.kind[i]}</span> "
            f"{html.escape(str(flags.au[i]))} &middot; {html.escape(str(flags.source_key[i]))} frames {frames_text} "
            f"&middot; label {int(flags.label[i])} &middot; p {flags.mean_p[i]:.2f} &middot; score {flags.score[i]:.3f} "
            f"&middot; {flags.context[i]}</div><div class='reason'>{html.escape(str(flags.reason[i]))}</div>"
            f"<div class='row'>{_img(strip, 'frames')}{_img(timeline, 'timeline')}</div></div>")
    timelines.close()
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(parts))
    return path
