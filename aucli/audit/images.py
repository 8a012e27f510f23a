"""Face tiles with their label and probability drawn on, for the review queue and the HTML report."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["flag_frames", "grid", "hstack", "png_bytes", "tile"]

#: Border colours: frames of the flag, frames around it for comparison.
FLAG_COLOUR = (230, 80, 30)
CONTEXT_COLOUR = (150, 150, 150)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()


def tile(crop: np.ndarray, lines: Sequence[str], *, size: int = 128, border: tuple[int, int, int] = FLAG_COLOUR,
         width: int = 3) -> np.ndarray:
    """A face crop resized to ``size``, framed in ``border``, with caption ``lines`` under it: (H, W, 3) uint8."""
    from PIL import Image, ImageDraw

    face = Image.fromarray(np.ascontiguousarray(crop)).convert("RGB").resize((size, size), Image.BILINEAR)
    font_size = max(11, size // 8)
    line_height = font_size + 3
    canvas = Image.new("RGB", (size + 2 * width, size + 2 * width + line_height * len(lines) + 4), (255, 255, 255))
    ImageDraw.Draw(canvas).rectangle([0, 0, size + 2 * width - 1, size + 2 * width - 1], fill=border)
    canvas.paste(face, (width, width))
    draw = ImageDraw.Draw(canvas)
    font = _font(font_size)
    for i, line in enumerate(lines):
        draw.text((width + 1, size + 2 * width + 2 + i * line_height), line, fill=(20, 20, 20), font=font)
    return np.asarray(canvas)


def hstack(tiles: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Tiles side by side on white, top-aligned."""
    height = max(t.shape[0] for t in tiles)
    width = sum(t.shape[1] for t in tiles) + gap * (len(tiles) - 1)
    out = np.full((height, width, 3), 255, np.uint8)
    x = 0
    for t in tiles:
        out[: t.shape[0], x : x + t.shape[1]] = t
        x += t.shape[1] + gap
    return out


def grid(tiles: Sequence[np.ndarray], columns: int, gap: int = 6) -> np.ndarray:
    """Tiles in rows of ``columns``."""
    rows = [hstack(tiles[i : i + columns], gap) for i in range(0, len(tiles), columns)]
    width = max(r.shape[1] for r in rows)
    height = sum(r.shape[0] for r in rows) + gap * (len(rows) - 1)
    out = np.full((height, width, 3), 255, np.uint8)
    y = 0
    for r in rows:
        out[y : y + r.shape[0], : r.shape[1]] = r
        y += r.shape[0] + gap
    return out


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of an RGB uint8 image."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def flag_frames(positions: np.ndarray, segment: np.ndarray, *, show: int = 4, around: int = 1) -> tuple[list[int], list[bool]]:
    """Positions to show for a flag: up to ``show`` spread over its frames, ``around`` before and after.

    Args:
        positions: the flag's positions in the audit's sequence order (consecutive).
        segment: ``(n,)`` segment ids (context frames stay in the flag's segment).
    Returns:
        (positions, inside-the-flag flags) in time order.
    """
    first, last = int(positions[0]), int(positions[-1])
    chosen = np.unique(np.linspace(first, last, num=min(show, last - first + 1)).round().astype(int)).tolist()
    inside = [True] * len(chosen)
    before = [p for p in range(first - around, first) if p >= 0 and segment[p] == segment[first]]
    after = [p for p in range(last + 1, last + 1 + around) if p < segment.size and segment[p] == segment[last]]
    return before + chosen + after, [False] * len(before) + inside + [False] * len(after)
