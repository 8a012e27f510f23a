"""Options shared by several commands, so that every command spells them the same way."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import click

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of tables.")

device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="Torch device: auto (cuda when available, else cpu), cpu, cuda, cuda:1, ...",
)


def accept_modified_weights_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--accept-modified-weights``: every checkpoint or saved state the command loads may differ from
    the sha256 its JSON records (a warning instead of a refusal); see docs/checkpoints.md."""

    @functools.wraps(command)
    def run(*args: Any, accept_modified_weights: bool, **kwargs: Any) -> Any:
        from aucli.model.checkpoint import accepting_modified_weights

        with accepting_modified_weights(accept_modified_weights):
            return command(*args, **kwargs)

    return click.option(
        "--accept-modified-weights",
        is_flag=True,
        help="Load checkpoint weights even where they differ from the sha256 their JSON records (changed on purpose).",
    )(run)


class RecipeType(click.ParamType):
    """A recipe: a YAML file, or a packaged recipe's name (``synthetic``, ``synthetic.yaml``,
    ``recipes/synthetic.yaml``) when no such file exists; converts to the file's path."""

    name = "recipe"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from aucli.errors import UsageError
        from aucli.resources import resolve_recipe

        try:
            return str(resolve_recipe(value))
        except UsageError as error:
            self.fail(str(error), param, ctx)


#: The type of every ``--recipe`` option.
RECIPE = RecipeType()


def label_format_option(*names: str, required: bool = False, help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A label-format option (``--format``, ``--label-format``) whose choices are the label importers'
    formats, read from :data:`aucli.labels.FORMATS` (the one list of them), so ``--help`` names every
    format there and a format added to it is offered here without an edit."""
    from aucli.labels import FORMATS

    return click.option(*names, type=click.Choice(tuple(FORMATS)), required=required, help=help)


def store_argument(exists: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The STORE positional argument (an HDF5 corpus store)."""
    return click.argument("store", type=click.Path(exists=exists, dir_okay=False, writable=not exists))


def echo_json(payload: Any) -> None:
    """Print ``payload`` as indented JSON on stdout (numpy scalars and paths become plain values)."""
    click.echo(json.dumps(payload, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


#: Face detection, sampling and cropping options shared by ``preprocess`` and ``predict`` (the
#: parameter names are those of :func:`face_options_from`).
_FACE_OPTIONS = (
    click.option(
        "--detector",
        type=click.Choice(("auto", "centerface", "insightface", "none")),
        default="auto",
        show_default=True,
        help="Face detector; none for already cropped, aligned faces (resize only).",
    ),
    click.option(
        "--detector-models",
        type=click.Path(exists=True),
        help="insightface models: an .onnx file, a pack folder or a folder of packs.",
    ),
    click.option("--every", type=int, default=1, show_default=True, help="Keep every N-th frame."),
    click.option("--fps", type=float, help="Keep about F frames per second of video (instead of --every)."),
    click.option("--max-faces", type=int, default=1, show_default=True, help="Most faces kept per frame (largest/central)."),
    click.option(
        "--select",
        type=click.Choice(("largest", "central", "all")),
        default="largest",
        show_default=True,
        help="Which faces to keep; the first ranked face is the subject (track 0), which labels attach to.",
    ),
    click.option("--crop-size", type=int, default=256, show_default=True, help="Side of the aligned face crop, pixels."),
    click.option(
        "--margin", type=float, default=0.25, show_default=True, help="Alignment margin around the face (keeps brows and chin)."
    ),
    click.option(
        "--detect-width", type=int, default=320, show_default=True, help="Detect on frames downscaled to this width (0: full size)."
    ),
    click.option(
        "--detect-every", type=int, default=2, show_default=True, help="Detect on every k-th frame, interpolating landmarks between."
    ),
    click.option("--min-score", type=float, default=0.5, show_default=True, help="Minimum detector score."),
)


def face_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the face options (``--detector`` ... ``--min-score``) to a command, in this order."""
    for option in reversed(_FACE_OPTIONS):
        command = option(command)
    return command


def face_options_from(
    *,
    detector: str,
    detector_models: str | None,
    every: int,
    fps: float | None,
    max_faces: int,
    select: str,
    crop_size: int,
    margin: float,
    detect_width: int,
    detect_every: int,
    min_score: float,
    device: str = "cpu",
):
    """The :class:`aucli.faces.pipeline.FaceOptions` of the values of :func:`face_options`."""
    from aucli.faces.pipeline import FaceOptions

    return FaceOptions(
        detector=detector,
        models_dir=detector_models,
        crop_size=crop_size,
        margin=margin,
        detect_width=detect_width or None,
        detect_every=detect_every,
        max_faces=max_faces,
        select=select,  # type: ignore[arg-type]
        every=every,
        fps=fps,
        threshold=min_score,
        device=device,
    )


def detector_device(device: str) -> str:
    """``auto`` -> ``cuda`` when onnxruntime has its CUDA provider, else ``cpu``; cpu/cuda as given."""
    from aucli.errors import UsageError

    value = device.lower()
    if value == "auto":
        import onnxruntime

        return "cuda" if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else "cpu"
    if value == "cpu" or value.startswith("cuda"):
        return value
    raise UsageError(f"--device must be auto, cpu or cuda, got {device!r}")
