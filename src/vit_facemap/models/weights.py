"""Model weights as safetensors files (no pickles): save, load, and start a model from a file.

:func:`load_pretrained` starts a backbone (a timm ViT, hybrid or ResNet) from weights written
elsewhere: a published timm checkpoint saved to a local file, a file on the Hugging Face hub
(``hf-hub:org/name``, where a user is online), or a run of this project. Every tensor of the
backbone must come from the file: a file of another architecture fails with the layers that
did not fit, rather than leaving part of the network at its random start.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from vit_facemap.errors import DataError, first_line

# prefixes under which a backbone's tensors sit in other files: DataParallel, this project's
# keypoint models (backbone.vit / backbone.net) and its classifier (vit.)
PREFIXES = ("module.", "backbone.vit.", "backbone.net.", "backbone.", "vit.", "net.", "model.")
TOKENS = ("cls_token", "reg_token")  # a ViT's own prefix tokens
GRID_KEY = "vit_grid"  # safetensors metadata: the token grid (h, w) of a ViT's position embedding


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = dict(metadata or {})
    grid = _vit_grid(model)
    if grid is not None:  # lets a non-square position embedding be resampled when reused
        metadata.setdefault(GRID_KEY, f"{grid[0]},{grid[1]}")
    return save_tensors(state, path, metadata)


def save_tensors(state: dict[str, torch.Tensor], path: str | Path,
                 metadata: dict[str, str] | None = None) -> Path:
    """``state`` as a safetensors file, written whole or not at all, readable as the
    user's other files are (safetensors creates its files for their owner alone, so a
    colleague who could read a run folder could not read its weights)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=metadata or None)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)
    tmp.replace(path)
    return path


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a model's own weights (a run's ``model.safetensors``): every tensor, exactly.
    Weights written elsewhere go through :func:`load_pretrained`."""
    state, _ = read_weights(path)
    model.load_state_dict(state)
    return model


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a safetensors file (or a torch state dict, read without
    unpickling code); a missing or unreadable file is a :class:`DataError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError("weights file not found" if not path.exists() else
                        "weights path is not a file", path)
    try:
        if path.suffix == ".safetensors" or _is_safetensors(path):  # whatever its name
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                meta = dict(f.metadata() or {})
            return load_file(str(path)), meta
        # timm's training checkpoints keep their command line (argparse.Namespace) beside
        # the weights: plain data, safe to read
        with torch.serialization.safe_globals([argparse.Namespace]):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a weights file, a pickle of other objects
        # torch's message for other objects says how to unpickle them anyway, which no
        # command here can do
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if isinstance(exc, pickle.UnpicklingError) and found:
            raise DataError("cannot read weights: the file holds Python objects besides "
                            f"tensors ({found.group(1)}), which are not unpickled (they could "
                            "run code); save the state dict alone "
                            "(torch.save(checkpoint['state_dict'], ...)) or as safetensors",
                            path) from None
        if isinstance(exc, pickle.UnpicklingError):
            raise DataError("cannot read weights: not a safetensors file or a torch state dict",
                            path) from None
        raise DataError(f"cannot read weights: {first_line(exc)}", path) from None
    for key in ("state_dict", "model"):  # training checkpoints keep the weights one level down
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError("not a state dict of tensors", path)
    return state, {}


def _is_safetensors(path: Path) -> bool:
    """A safetensors file: an 8-byte header length, then the header's JSON."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def fetch_hub_weights(source: str) -> Path:
    """``hf-hub:org/name`` (optionally ``hf-hub:org/name/file``): the file from the Hugging
    Face hub (cached by huggingface_hub; needs a network the first time)."""
    spec = source.removeprefix("hf-hub:").strip("/")
    parts = spec.split("/")
    if len(parts) < 2:
        raise DataError(f"{source!r}: give the hub repository as hf-hub:org/name")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:]) or "model.safetensors"
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo, filename))
    except Exception as exc:
        raise DataError(f"{source}: cannot fetch {filename} from the hub ({first_line(exc)}); "
                        "without a network, download the file elsewhere and give its path") from None


def load_pretrained(model: nn.Module, source: str | Path, optional: tuple[str, ...] = ()) -> nn.Module:
    """Start ``model`` from the weights in ``source`` (a file, or ``hf-hub:org/name``).

    Prefixes of other wrappers are removed; a ViT's position embedding is resampled to the
    model's token grid (the file's grid from its metadata; else square, as published
    checkpoints are, or for a count that is not a square the factorisation closest to the
    model's aspect) and the patch kernel to its patch size (timm's checkpoint filter); the
    first convolution is adapted to the model's input channels (timm's ``adapt_input_conv``:
    RGB summed for gray). Tensors of modules the model lacks (a classification head, a
    ResNet's stages after the cut, a masked auto-encoder's decoder) are left out. Anything
    else that does not fit - a missing tensor, one of another shape, an extra tensor in a
    module the model has - is a :class:`DataError` naming the file and the layers. Keys
    starting with one of ``optional`` may be missing or of another shape (kept as built).
    """
    path = fetch_hub_weights(str(source)) if str(source).startswith("hf-hub:") else Path(source)
    state, meta = read_weights(path)
    own = model.state_dict()
    state = _strip_prefix(state, own)
    state = _adapt(model, state, meta)
    top = {k.split(".")[0] for k in own}
    # a ViT's class or register tokens that the model lacks: the file's position embedding
    # holds other tokens than the model's, and would be read as the wrong grid
    extra = [k for k in state if k not in own and (k.split(".")[0] in top or k in TOKENS)
             and not k.startswith(optional)]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and state[k].shape != v.shape and not k.startswith(optional)]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")
               and not k.startswith(optional)]
    if extra or wrong or missing:
        problems = [f"{what}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                    for what, keys in (("missing", missing), ("other shape", wrong),
                                       ("not in the model", extra)) if keys]
        raise DataError("weights do not fit the model (another architecture or size?); "
                        + "; ".join(problems), path)
    usable = {k: state[k] for k, v in own.items() if k in state and state[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    return model


def _strip_prefix(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]
                  ) -> dict[str, torch.Tensor]:
    """The file's tensors under the prefix that matches most of the model's names."""
    def under(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

    # DataParallel's prefix, around any of the others
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    best = max(("", *PREFIXES), key=lambda p: sum(k in own for k in under(p)))
    return under(best)


def _vit_grid(model: nn.Module) -> tuple[int, int] | None:
    from timm.models.vision_transformer import VisionTransformer

    vit = next((m for m in model.modules() if isinstance(m, VisionTransformer)), None)
    if vit is None or getattr(vit, "pos_embed", None) is None:
        return None
    return tuple(int(g) for g in vit.patch_embed.grid_size)


def _adapt(model: nn.Module, state: dict[str, torch.Tensor], meta: dict[str, str]
           ) -> dict[str, torch.Tensor]:
    from timm.layers import resample_abs_pos_embed
    from timm.models._manipulate import adapt_input_conv
    from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

    own = model.state_dict()
    if isinstance(model, VisionTransformer):
        pos = state.pop("pos_embed", None)
        # a conv stem (the classifier's) has no one patch kernel for timm's filter to
        # resample a file's to: it crashed with "'Sequential' object has no attribute
        # 'weight'"; kept aside, the kernel is named below as not in the model
        kernel = None
        if getattr(getattr(model.patch_embed, "proj", None), "weight", None) is None:
            kernel = state.pop("patch_embed.proj.weight", None)
        state = checkpoint_filter_fn(state, model)
        if kernel is not None:
            state["patch_embed.proj.weight"] = kernel
        if pos is not None and model.pos_embed is not None:
            n_prefix = 0 if getattr(model, "no_embed_class", False) else model.num_prefix_tokens
            new = tuple(int(g) for g in model.patch_embed.grid_size)
            old = _source_grid(pos.shape[1] - n_prefix, new, meta.get(GRID_KEY))
            if old is not None and old != new:
                pos = resample_abs_pos_embed(pos, new_size=list(new), old_size=list(old),
                                             num_prefix_tokens=n_prefix)
            state["pos_embed"] = pos
    for k, v in list(state.items()):
        # the first convolution of a file made for other input channels (RGB into gray)
        if (k in own and v.ndim == 4 and own[k].ndim == 4 and v.shape[1] != own[k].shape[1]
                and v.shape[0] == own[k].shape[0] and v.shape[2:] == own[k].shape[2:]
                and v.shape[1] in (1, 3)):
            state[k] = adapt_input_conv(own[k].shape[1], v.float()).to(v.dtype)
    return state


def _source_grid(n: int, target: tuple[int, int], saved: str | None) -> tuple[int, int] | None:
    if saved:
        h, w = (int(s) for s in saved.split(","))
        if h * w == n:
            return h, w
    root = math.isqrt(n)
    if root * root == n:  # published checkpoints are square (timm's convention)
        return root, root
    # a non-square grid without metadata (this project's runs before they recorded it)
    pairs = [(h, n // h) for h in range(1, n + 1) if n % h == 0]
    if not pairs:
        return None
    aspect = target[0] / target[1]
    return min(pairs, key=lambda p: abs(math.log(p[0] / p[1] / aspect)))
