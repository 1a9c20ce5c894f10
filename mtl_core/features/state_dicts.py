"""Reading a weights file into a state dict, and loading a state dict into a backbone.

A weights file is read with safetensors or with ``torch.load(..., weights_only=True)``, so loading one never runs
code.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..errors import WeightsError


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors or a plain (weights-only) PyTorch file."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; give the path of a .safetensors or .pth file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's own advice (weights_only=False) is exactly what we refuse
                state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to parse means the file is unusable
        raise WeightsError(f"cannot read weights file {path} as safetensors or a weights-only state dict "
                           f"({type(exc).__name__}); it may hold code (refused) or be damaged: export the "
                           f"weights with safetensors") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"weights file {path} does not hold a state dict of tensors")
    return state


def fit_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], name: str, source: str) -> None:
    """Load ``state`` into ``model``; classifier keys the model lacks are ignored, anything else must fit."""
    own = model.state_dict()
    state = {k.removeprefix("module."): v for k, v in state.items()}
    missing = [k for k in own if k not in state]
    mismatched = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or mismatched:
        detail = f"{len(missing)} missing keys (e.g. {missing[0]})" if missing else ""
        if mismatched:
            k = mismatched[0]
            detail += ("; " if detail else "") + (f"{len(mismatched)} shape mismatches (e.g. {k}: file "
                                                 f"{tuple(state[k].shape)}, model {tuple(own[k].shape)})")
        raise WeightsError(f"weights {source} do not fit backbone {name!r}: {detail}; use weights saved from the "
                           f"same architecture")
    model.load_state_dict({k: state[k] for k in own}, strict=True)
