"""The shipped base model of the embedded default: installed into a home with its sha256 checked,
refused when a file was altered, and reproduced by the build code (the session's real build)."""
from __future__ import annotations

import json
import shutil

import pytest

from engine.models import builtin
from engine.models.builtin import MANIFEST, ensure_builtin, sha256, shipped_folder

from conftest import TINY_PRESET

NAME = "tiny-arith"


def test_first_use_installs_the_shipped_copy_with_its_sums(tmp_path):
    logged = []
    folder = ensure_builtin(tmp_path, NAME, log=logged.append)
    manifest = json.loads((shipped_folder(NAME) / MANIFEST).read_text())
    assert sorted(p.name for p in folder.iterdir()) == sorted(manifest["sha256"])
    assert all(sha256(folder / f) == digest for f, digest in manifest["sha256"].items())
    assert logged == [f"base model {NAME}: installed the shipped copy in {folder} (sha256 checked)"]
    assert ensure_builtin(tmp_path, NAME, log=logged.append) == folder and len(logged) == 1


def test_an_altered_shipped_file_is_refused_and_nothing_installed(tmp_path, monkeypatch):
    shipped = tmp_path / "shipped"
    shutil.copytree(shipped_folder(NAME), shipped / shipped_folder(NAME).name)
    weights = shipped / shipped_folder(NAME).name / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    monkeypatch.setattr(builtin, "SHIPPED", shipped)
    home = tmp_path / "home"
    with pytest.raises(RuntimeError, match="model.safetensors does not match its sha256"):
        ensure_builtin(home, NAME, log=lambda _: None)
    assert [p.name for p in (home / "models").iterdir()] == [f".{NAME}-v1.lock"]


def state_dict(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def scores(folder) -> dict[str, float]:
    """Greedy pass@1 (%) on 100 questions of each task of the tiny default."""
    from engine.config import resolve
    from engine.models.generation import HFGenerator
    from engine.stages.evaluate import evaluate_tasks
    from engine.tasks import get_task

    import torch

    cfg = resolve(TINY_PRESET)
    tasks = {name: (get_task(name), "id" if name == cfg.tasks.id else "ood") for name in cfg.all_tasks()}
    gen = HFGenerator(folder, "cpu", torch.float32, batch_size=cfg.eval.batch_size)
    return {r["task"]: r["value"] for r in evaluate_tasks(gen, tasks, cfg.eval, 100, seed=0)}


def test_the_build_code_reproduces_the_shipped_weights(base_models):
    """The session's base model was really built (conftest builds, never installs): bit for bit
    the shipped weights when torch and the CPU match the manifest's (1 thread), else it must score
    like them."""
    built, shipped = state_dict(base_models / f"{NAME}-v1"), state_dict(shipped_folder(NAME))
    assert sorted(built) == sorted(shipped)
    if all(built[k].equal(shipped[k]) for k in built):
        return
    rebuilt_scores, shipped_scores = scores(base_models / f"{NAME}-v1"), scores(shipped_folder(NAME))
    for task, value in shipped_scores.items():
        assert abs(rebuilt_scores[task] - value) <= 10, (task, rebuilt_scores, shipped_scores)
