"""The per-epoch checkpoint files: what training writes and scoring reads back."""

from __future__ import annotations

import re
from pathlib import Path

from . import io


class CheckpointError(io.BadInput, RuntimeError):
    """A checkpoint file is truncated, corrupted or holds something other than weights."""


def checkpoint(model_name: str, model_kwargs: dict, model, epoch: int) -> dict:
    """What a checkpoint file holds: how to rebuild the network, its epoch and its weights (on the CPU)."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"model_name": model_name, "model_kwargs": model_kwargs, "epoch": epoch, "state_dict": state}


def load_model(path: str | Path):
    """(network, epoch) a checkpoint describes; a clear error names a broken file."""
    from . import models

    try:
        saved = io.load_torch(path)
        model = models.build_model(saved["model_name"], **saved["model_kwargs"])
        model.load_state_dict(saved["state_dict"])
    except Exception as error:  # noqa: BLE001 - any failure means the file is unusable
        match = re.search(r"epoch(\d+)", Path(path).name)
        epoch = f" of epoch {match.group(1)}" if match else ""
        raise CheckpointError(f"cannot load checkpoint{epoch} {path}: {error}; delete it and rerun to "
                              "regenerate it") from error
    return model, int(saved["epoch"])
