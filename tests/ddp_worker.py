"""Run by tests/test_train_ddp.py under torchrun: ``aucli train ARGS`` in this process, then this rank's model.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/ddp_worker.py DUMP_DIR ARGS...

Each rank writes ``DUMP_DIR/rank<r>-initial.safetensors`` (every tensor of its model as built) and
``DUMP_DIR/rank<r>-final.safetensors`` (after training), so the test can compare the ranks tensor by
tensor. The trainer builds the model inside ``train``; the worker keeps a handle on it by wrapping
``aucli.engine.fold.build_method_model``, as bench/collaboration_gain.py does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import aucli.engine.fold as fold
from aucli.cli.main import cli
from aucli.fileio import save_tensors


def main(dump: Path, args: list[str]) -> None:
    rank = int(os.environ["RANK"])
    models: list[Any] = []
    build = fold.build_method_model

    def keep(*a: Any, **k: Any) -> Any:
        model = build(*a, **k)
        save_tensors(dump / f"rank{rank}-initial.safetensors", model.state_dict())
        models.append(model)
        return model

    fold.build_method_model = keep
    try:
        cli(["train", *args], standalone_mode=False)
    finally:
        fold.build_method_model = build
    save_tensors(dump / f"rank{rank}-final.safetensors", models[-1].state_dict())


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
