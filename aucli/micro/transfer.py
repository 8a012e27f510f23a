"""From a macro-expression checkpoint to the model fine-tuned on micro data: AUs, configuration, weights.

In AUFormer an AU is not a head but an expert in every MoKE group, so only the AUs the checkpoint
detects can be fine-tuned (:func:`map_micro_aus`). The fine-tuned model keeps those AUs' experts
and head rows, sliced on the AU axis (:func:`transfer_state`); the experts' scale becomes
``s * N_kept / N`` so each kept expert injects what it injected before (:func:`transfer_config`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from aucli.config import ModelConfig
from aucli.engine.data import label_columns
from aucli.errors import ModelError, StoreError, UsageError

__all__ = ["au_axis", "initializer", "map_micro_aus", "transfer_config", "transfer_state"]


def map_micro_aus(
    source_aus: Sequence[str],
    label_aus: Sequence[str],
    *,
    label_set: str,
    au_map: Mapping[str, str] | None = None,
    requested: Sequence[str] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """Checkpoint AU -> label-set AU of the AUs to fine-tune (checkpoint order), and the label-set
    AUs the checkpoint has no expert for.

    Raises:
        StoreError: no AU in common, or a requested AU the label set does not code.
        UsageError: a requested AU the checkpoint does not detect.
    """
    try:
        pairs = label_columns(list(source_aus), list(label_aus), au_map, require_all=False)
    except StoreError:
        raise StoreError(
            f"no AU in common between the checkpoint ({', '.join(source_aus)}) and label set {label_set!r} "
            f"({', '.join(label_aus)}); map differently named AUs with -o data.au_map=\"{{AU12: AU12R}}\""
        ) from None
    if requested:
        lacking = [a for a in requested if a not in source_aus]
        if lacking:
            raise UsageError(
                f"the checkpoint does not detect {', '.join(lacking)} (it detects {', '.join(source_aus)}); an AU is an expert "
                "in every AUFormer block, so finetune-micro adapts the checkpoint's own AUs and adds none: drop them from "
                "--aus, or train a model for them with `aucli train`"
            )
        uncoded = [a for a in requested if a not in pairs]
        if uncoded:
            raise StoreError(f"label set {label_set!r} codes no {', '.join(uncoded)} (its AUs: {', '.join(label_aus)})")
        pairs = {a: pairs[a] for a in source_aus if a in requested}
    mapped = set(pairs.values())
    missing = [a for a in label_aus if a not in mapped]
    return pairs, missing


def transfer_config(cfg: ModelConfig, keep: Sequence[str]) -> ModelConfig:
    """The checkpoint's model configuration restricted to the AUs ``keep`` (in the checkpoint's order).

    The experts' scale becomes ``s * len(keep) / N``: the injected mean over experts then adds up
    the kept experts' knowledge exactly as the checkpoint's mean did.
    """
    unknown = [a for a in keep if a not in cfg.au_names]
    if unknown or not keep:
        raise ModelError(f"cannot keep AUs {list(keep)} of a model that detects {cfg.au_names}")
    ordered = [a for a in cfg.au_names if a in keep]
    moke = dataclasses.replace(cfg.moke, scale=cfg.moke.scale * len(ordered) / len(cfg.au_names))
    return dataclasses.replace(cfg, au_names=ordered, moke=moke)


def au_axis(name: str, *, head_hidden: int) -> int | None:
    """The axis of an AUFormer parameter (or buffer) that indexes AUs; None when every AU shares it.

    MoKE group tensors are expert-major (axis 0) except the multi-receptive-field convs, which are
    dilation-major (axis 1); expert heads are AU-major; in the main head only the output layer is.
    """
    if name.startswith(("attn_experts.", "mlp_experts.")):
        return 1 if name.rsplit(".", 1)[-1] in ("mrf_weight", "mrf_bias") else 0
    if name.startswith("expert_heads."):
        return 0
    if name.startswith("head."):
        output_layer = f"head.mlp.{2 if head_hidden > 0 else 0}."
        return 0 if name.startswith(output_layer) else None
    return None


def transfer_state(
    state: Mapping[str, Tensor], source_aus: Sequence[str], keep: Sequence[str], *, head_hidden: int
) -> dict[str, Tensor]:
    """A full AUFormer state dict (backbone included) cut down to the AUs ``keep``, in source order."""
    index = [list(source_aus).index(a) for a in source_aus if a in keep]
    result: dict[str, Tensor] = {}
    for name, tensor in state.items():
        axis = au_axis(name, head_hidden=head_hidden)
        if axis is None:
            result[name] = tensor
        else:
            result[name] = tensor.index_select(axis, torch.as_tensor(index, dtype=torch.long, device=tensor.device))
    return result


def initializer(state: Mapping[str, Tensor], tune: str) -> Callable[[nn.Module], None]:
    """The ``init_model`` hook of :func:`aucli.engine.fold.train_fold`: load the transferred weights; freeze the experts for ``heads``."""

    def init(model: nn.Module) -> None:
        try:
            model.load_state_dict(dict(state), strict=True)
        except RuntimeError as error:
            raise ModelError(f"the checkpoint's weights do not fit the fine-tuned model: {str(error).splitlines()[0]}") from None
        if tune == "heads":
            model.attn_experts.requires_grad_(False)
            model.mlp_experts.requires_grad_(False)

    return init
