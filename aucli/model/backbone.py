"""The frozen timm ViT backbone: creation by name and overrides, weights, checks, offline behaviour.

Weights come from one of three sources:

- ``"hub"``: timm's pretrained weights for the model name (Hugging Face hub or timm's URL),
  read from the local cache when offline;
- a local file: ``.safetensors`` or ``.pth``/``.pt``/``.bin`` (a plain state dict, read with
  ``weights_only=True``, passed through timm's ViT checkpoint filter, which also resamples the
  position embedding to another image size), or timm's ``.npz`` (Google's JAX format, through the
  model's own loader);
- ``"random"``: timm's random init (tests, parameter counting).

Every source loads strictly: all backbone tensors must come from it. Offline, a missing hub weight fails at once with a :class:`ModelError` that says what to do. When
``HF_HUB_OFFLINE`` is not set and the hub host does not answer a short socket probe, offline mode is
switched on (for this process) before timm is asked, so it never waits on retries.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from aucli.config import ModelConfig
from aucli.errors import ModelError
from aucli.model.weights import resolve_backbone_weights

__all__ = [
    "BLOCK_PARTS",
    "WEIGHT_SUFFIXES",
    "backbone_kwargs",
    "backbone_data_config",
    "create_backbone",
    "check_backbone",
    "freeze_backbone",
    "hub_is_offline",
    "ensure_offline_when_unreachable",
]

#: What AUFormer reuses from every timm ``Block`` (the pre-norm block: x + attn(norm1 x), x + mlp(norm2 x)).
BLOCK_PARTS = ("norm1", "attn", "ls1", "drop_path1", "norm2", "mlp", "ls2", "drop_path2")
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".npz")

#: Everything stochastic in a timm ViT, switched off: the backbone is frozen and deterministic.
_NO_DROPOUT = dict(drop_rate=0.0, pos_drop_rate=0.0, patch_drop_rate=0.0, proj_drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0)
_HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def backbone_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    """Keyword arguments for ``timm.create_model(cfg.backbone, **kwargs)``: overrides, image size,
    no classifier, no dropout."""
    kwargs: dict[str, Any] = dict(cfg.backbone_overrides)
    if cfg.img_size is not None:
        kwargs["img_size"] = cfg.img_size
    kwargs.update(num_classes=0, **_NO_DROPOUT)
    return kwargs


def resolve_backbone_source(cfg: ModelConfig, weights: str | None = None) -> str:
    """The weight source to build with: ``weights``, else ``cfg.backbone_weights``, else ``"hub"``.

    ``embedded:NAME`` (a backbone shipped in the package) and backbone names listed in the model
    registry (``aucli/assets/registry.json``) become their files here (sha256 checked), so that
    checkpoints record the file and its hash rather than a name.
    """
    source = weights if weights is not None else (cfg.backbone_weights or "hub")
    return resolve_backbone_weights(source) or source


def backbone_data_config(vit: nn.Module) -> dict[str, Any]:
    """Preprocessing a timm ViT expects: ``input_size (3, H, W)``, ``mean``, ``std``, ``interpolation``, ``crop_pct``."""
    pretrained = getattr(vit, "pretrained_cfg", None) or {}
    img_size = tuple(int(v) for v in vit.patch_embed.img_size)
    return {
        "input_size": (3, *img_size),
        "mean": tuple(float(v) for v in pretrained.get("mean", (0.485, 0.456, 0.406))),
        "std": tuple(float(v) for v in pretrained.get("std", (0.229, 0.224, 0.225))),
        "interpolation": str(pretrained.get("interpolation", "bicubic")),
        "crop_pct": float(pretrained.get("crop_pct", 0.875)),
    }


def create_backbone(cfg: ModelConfig, *, weights: str = "random", device: torch.device | str | None = None) -> nn.Module:
    """Build ``cfg.backbone`` with timm, load ``weights`` ("hub", "random" or a file path), check and freeze it.

    Weights load strictly: every backbone tensor must come from them (timm itself loads non-strictly
    when the classifier differs, which would let a file of another depth load half-way, silently).
    ``device="meta"`` builds it without memory (parameter counting); weights are then not loaded.
    """
    import timm

    name = cfg.backbone
    if not timm.is_model(name):
        architecture = name.split(".", 1)[0]
        close = difflib.get_close_matches(architecture, timm.list_models("*vit*") + timm.list_models("deit*"), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `timm.list_models('vit_*')` lists the candidates"
        raise ModelError(f"unknown timm backbone {name!r}{hint}")
    kwargs = backbone_kwargs(cfg)
    meta = device is not None and torch.device(device).type == "meta"
    source = "random" if meta else weights
    file = None
    if source == "hub":
        _check_hub_weights(name)
        # Build with the pretrained classifier's size so that timm loads strictly, then drop the classifier.
        kwargs["num_classes"] = int(timm.models.get_pretrained_cfg(name).num_classes or 0)
    elif source != "random":
        file = _weight_file(Path(source))
    try:
        with torch.device(device) if device is not None else contextlib.nullcontext():
            vit = timm.create_model(name, pretrained=source == "hub", **kwargs)
    except TypeError as error:
        with torch.device("meta"):
            bare = timm.create_model(name, pretrained=False)
        check_backbone(bare, name)  # a non-ViT is named as such
        raise ModelError(
            f"timm could not build {name!r} with {kwargs}: {error}. aucli needs a timm VisionTransformer "
            "(vit_*, deit_*) and overrides it accepts (depth, embed_dim, num_heads, patch_size, ...)"
        ) from None
    except (RuntimeError, OSError, ValueError, KeyError) as error:
        if source != "hub":
            raise
        if isinstance(error, RuntimeError) and "state_dict" in str(error):
            raise ModelError(
                f"the hub weights of {name!r} do not fit it with the overrides {_overrides_text(cfg)}: {_short(error)}; "
                "drop the overrides that change the architecture, or use backbone_weights: random"
            ) from None
        raise ModelError(f"could not load the hub weights of {name!r}: {_short(error)}. {_WHAT_TO_DO.replace('NAME', name)}") from None
    check_backbone(vit, name)
    if source == "hub" and kwargs["num_classes"]:
        vit.reset_classifier(0)
    if file is not None:
        _load_weight_file(vit, file, cfg)
    _use_fused_attention(vit)
    freeze_backbone(vit)
    return vit


def _load_weight_file(vit: nn.Module, path: Path, cfg: ModelConfig) -> None:
    """Load a .safetensors/.pth state dict (through timm's ViT checkpoint filter) or Google's .npz, strictly."""
    where = f"{path} into {cfg.backbone!r} {_overrides_text(cfg)}".rstrip()
    if path.suffix.lower() == ".npz":
        try:
            vit.load_pretrained(str(path))
        except (RuntimeError, OSError, ValueError, KeyError) as error:
            raise ModelError(f"could not load {where}: {_first_line(error)}. {_FILE_HINT}") from None
        return
    from timm.models.vision_transformer import checkpoint_filter_fn

    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # safetensors and torch raise several types for a damaged file
        raise ModelError(f"{path} is not a readable {path.suffix} weight file: {_first_line(error)}") from None
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} does not hold a state dict of tensors. {_FILE_HINT}")
    classifiers = vit.pretrained_cfg.get("classifier") or ()
    classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
    try:
        state = checkpoint_filter_fn(state, vit)
        state = {k: v for k, v in state.items() if k.rsplit(".", 1)[0] not in classifiers}
        missing, unexpected = vit.load_state_dict(state, strict=False)
    except (RuntimeError, ValueError, KeyError) as error:
        raise ModelError(f"could not load {where}: {_short(error)}. {_FILE_HINT}") from None
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing[:3])}" + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")] if missing else []) + (
            [f"unexpected {', '.join(unexpected[:3])}" + (f" and {len(unexpected) - 3} more" if len(unexpected) > 3 else "")] if unexpected else []
        )
        raise ModelError(f"could not load {where}: {'; '.join(parts)}. {_FILE_HINT}")


_FILE_HINT = "The file must hold weights of this architecture (a timm state dict as .safetensors/.pth, or Google's .npz)"


_WHAT_TO_DO = (
    "Pass --backbone-weights PATH (a .safetensors/.pth/.npz file of this architecture), or fetch the "
    "weights once on a machine with network (python -c \"import timm; timm.create_model('NAME', "
    "pretrained=True)\") and copy its Hugging Face cache (~/.cache/huggingface) here"
)


def _overrides_text(cfg: ModelConfig) -> str:
    """``(depth=2, img_size=32)``: the architecture overrides of ``cfg``, or an empty string."""
    items = dict(cfg.backbone_overrides, **({"img_size": cfg.img_size} if cfg.img_size is not None else {}))
    return "(" + ", ".join(f"{k}={v}" for k, v in items.items()) + ")" if items else ""


def check_backbone(vit: nn.Module, name: str = "the backbone") -> None:
    """Refuse anything but a timm ``VisionTransformer`` built from the standard pre-norm ``Block``."""
    from timm.models.vision_transformer import Block, VisionTransformer

    if not isinstance(vit, VisionTransformer):
        raise ModelError(
            f"{name} is a timm {type(vit).__name__}, not a VisionTransformer; AUFormer supports timm ViTs "
            "built from the standard pre-norm Block (vit_*, deit_*)"
        )
    for index, block in enumerate(vit.blocks):
        missing = [part for part in BLOCK_PARTS if not hasattr(block, part)]
        if type(block) is not Block or missing:
            raise ModelError(
                f"{name} uses {type(block).__name__} blocks (block {index}); AUFormer supports only timm's "
                "standard pre-norm Block (x + attn(norm1(x)), then x + mlp(norm2(x))), not residual-post-norm "
                "or parallel blocks. Choose a plain ViT such as vit_base_patch16_224"
            )
    if getattr(vit, "dynamic_img_size", False) is False and not hasattr(vit.patch_embed, "grid_size"):
        raise ModelError(f"{name} has a patch embedding without a fixed grid; set dynamic_img_size: true in backbone_overrides")


def freeze_backbone(vit: nn.Module) -> None:
    """No gradients and eval mode (AUFormer keeps it in eval mode even while it trains)."""
    vit.requires_grad_(False)
    vit.eval()


def _use_fused_attention(vit: nn.Module) -> None:
    """Use ``scaled_dot_product_attention`` in the backbone whatever TIMM_FUSED_ATTN says."""
    for block in vit.blocks:
        if hasattr(block.attn, "fused_attn"):
            block.attn.fused_attn = True


def _weight_file(path: Path) -> Path:
    if not path.is_file():
        raise ModelError(f"backbone weight file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in WEIGHT_SUFFIXES:
        raise ModelError(f"backbone weight file {path} has suffix {suffix!r}; expected one of {', '.join(WEIGHT_SUFFIXES)}")
    return path


# ------------------------------------------------------------------------- offline handling
def hub_is_offline() -> bool:
    """True when huggingface_hub is in offline mode (``HF_HUB_OFFLINE``)."""
    try:
        from huggingface_hub import constants
    except ImportError:  # timm without huggingface_hub: only URL weights
        return _env_true("HF_HUB_OFFLINE")
    return bool(constants.HF_HUB_OFFLINE) or _env_true("HF_HUB_OFFLINE")


def ensure_offline_when_unreachable(timeout: float = 1.5) -> bool:
    """Switch the hub to offline mode (this process) when its host does not answer within ``timeout`` s.

    Returns True when the hub is offline afterwards. The probe runs in a daemon thread, so even a
    hanging DNS lookup costs at most ``timeout`` seconds.
    """
    if hub_is_offline():
        return True
    try:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    except ImportError:
        endpoint = "https://huggingface.co"
    parsed = urlparse(endpoint)
    host, port = parsed.hostname or "huggingface.co", parsed.port or (443 if parsed.scheme != "http" else 80)
    from urllib.request import getproxies, proxy_bypass

    proxy = getproxies().get(parsed.scheme or "https")
    if proxy and not proxy_bypass(host):  # behind a proxy, the proxy is what must answer
        proxy_url = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_url.hostname or host, proxy_url.port or (443 if proxy_url.scheme == "https" else 80)
    if probe_host(host, port, timeout):
        return False
    set_hub_offline()
    return True


def probe_host(host: str, port: int, timeout: float) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds (DNS included)."""
    result: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def set_hub_offline() -> None:
    """Offline mode for this process and its children: the env variable and huggingface_hub's constant."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = True
    except ImportError:
        pass


def _check_hub_weights(name: str) -> None:
    """Offline (or unreachable), fail at once unless timm's weights for ``name`` are cached locally."""
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError:
        cfg = None
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise ModelError(f"timm has no pretrained weights for {name!r}. {_WHAT_TO_DO.replace('NAME', name)}")
    if not ensure_offline_when_unreachable():
        return
    if cfg.file and Path(cfg.file).is_file():
        return
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo_id, _, revision = cfg.hf_hub_id.partition("@")
        filenames = ((cfg.hf_hub_filename,) if cfg.hf_hub_filename else ()) + _HUB_FILENAMES
        for filename in filenames:
            found = try_to_load_from_cache(repo_id, filename, revision=revision or None)
            if isinstance(found, str):
                return
    elif cfg.url:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(cfg.url).path)
        if cached.is_file():
            return
    raise ModelError(
        f"the pretrained weights of {name!r} are not in the local cache and the Hugging Face hub is offline "
        f"(HF_HUB_OFFLINE=1 or no network). {_WHAT_TO_DO.replace('NAME', name)}"
    )


def _env_true(key: str) -> bool:
    return os.environ.get(key, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _short(error: BaseException, limit: int = 300) -> str:
    """The error's message on one line, at most ``limit`` characters."""
    text = " ".join(str(error).split()).rstrip(".")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
