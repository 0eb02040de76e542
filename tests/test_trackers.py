"""report_to: a real tiny run (and a sweep trial on it) reported to TensorBoard (event files, read
back with tensorboard's EventAccumulator), W&B (offline mode, its run file read back record by
record) and MLflow (the home's local store, read back with MlflowClient), no network; a missing
extra, an unreachable tracker and one that fails later are warnings, never a failed run. Each
tracker's test skips when its package is not installed (the test extra installs all three)."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import sqlite3
import struct
from pathlib import Path

import pytest

from engine.config import resolve
from engine.errors import ConfigError
from engine.trackers import Trackers, open_trackers

from conftest import FAST, TINY_PRESET, imm

INSTALLED = [name for name, package in (("tensorboard", "tensorboard"), ("wandb", "wandb"), ("mlflow", "mlflow"))
             if importlib.util.find_spec(package)]
OFFLINE = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "MLFLOW_TRACKING_URI": "", "WANDB_PROJECT": "imm-test"}


def needs(package: str) -> None:
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed (pip install 'imm[{package}]')")


def run_env(**extra: str) -> dict:
    env = {k: v for k, v in OFFLINE.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, base_models):
    """(home, run id, the run's SFT steps from SQLite) of a real run reported to every installed
    tracker, with one sweep trial of iteration 1."""
    if not INSTALLED:
        pytest.skip("none of tensorboard, wandb, mlflow is installed")
    home = tmp_path_factory.mktemp("tracked-home")
    (home / "models").symlink_to(base_models)
    sets = FAST + ["analyze.when=every", "analyze.limit=16", "sft.batch_size=8", f"report_to={json.dumps(INSTALLED)}"]
    env_before = os.environ.pop("MLFLOW_TRACKING_URI", None)  # the default: the home's own store
    try:
        out = imm("run", str(TINY_PRESET), *[a for kv in sets for a in ("--set", kv)], home=home, check=True,
                  env=run_env())
        run_id = out.stdout.split()[1]
        imm("sweep", run_id, "--iter", "1", "--alpha", "0.3", "--drop", "0", "--subset", "8", home=home, check=True,
            env=run_env())
    finally:
        if env_before is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env_before
    with sqlite3.connect(home / "imm.db") as db:
        steps = db.execute("SELECT step, loss, lr FROM sft_steps WHERE run_id = ? AND iteration = 1 ORDER BY step",
                           [run_id]).fetchall()
    log = (home / "runs" / run_id / "engine.log").read_text()
    assert "warning" not in log and f"reporting to {', '.join(INSTALLED)}" in log
    return home, run_id, steps


def test_tensorboard_event_files_hold_the_steps_accuracies_yield_diagnostics_and_trials(tracked):
    needs("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    home, run_id, steps = tracked
    events = EventAccumulator(str(home / "runs" / run_id / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    losses = events.Scalars("iter1/sft/loss")
    assert [e.step for e in losses] == [s[0] for s in steps]
    assert [e.value for e in losses] == pytest.approx([s[1] for s in steps], rel=1e-6)  # float32 in the event file
    assert [e.step for e in events.Scalars("iter1/sft/grad_norm")] == [s[0] for s in steps]
    id_acc = events.Scalars("eval/id/arith_add3/pass@1")
    assert [e.step for e in id_acc] == [0, 1, 2]  # Base, SFT1, Merge1
    assert [e.step for e in events.Scalars("filter/yield_pct")] == [1]
    texts = {tag: make_ndarray(events.Tensors(tag)[-1].tensor_proto)[0].decode()
             for tag in events.Tags()["tensors"]}
    assert '"report_to"' in texts["config/text_summary"]
    assert texts["layers/sft1/text_summary"].startswith("| layer | importance | importance_pct |")
    assert "| 1 | 0.3 | 0.0 |" in texts["merge_lab/iter1/text_summary"]  # trial 1: alpha 0.3, p 0


def wandb_records(run_dir: Path):
    """The records of W&B's offline run files (the engine's, then the sweep worker's, which
    resumes the same W&B run): a 7-byte header, then 32 KiB blocks of records, each a 7-byte
    header (crc32, length, type: full, first, middle, last) and a protobuf Record."""
    paths = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(paths) == 2
    for path in paths:
        yield from wandb_file_records(path)


def wandb_file_records(path: Path):
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, header = path.read_bytes(), 32768, 7
    assert data[:4] == b":W&B"
    pos, parts = header, []
    while pos + header <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos:pos + header]) if left >= header else (0, 0, 0)
        if left < header or (length == 0 and kind == 0):
            pos += left  # the rest of a block is padding
            continue
        parts.append(data[pos + header:pos + header + length])
        pos += header + length
        if kind in (1, 4):  # a full record, or the last part of one
            record = pb.Record()
            record.ParseFromString(b"".join(parts))
            parts = []
            yield record


def test_wandb_offline_run_holds_the_config_steps_accuracies_and_tables(tracked):
    needs("wandb")
    home, run_id, steps = tracked
    history, config = [], {}
    for record in wandb_records(home / "runs" / run_id):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                            for item in record.history.item})
        elif kind == "run":
            config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
            assert record.run.display_name == run_id and record.run.project == "imm-test"
        elif kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
    assert config["sft"]["batch_size"] == 8 and config["report_to"] == INSTALLED
    sft = [(h["iter1/sft/step"], h["iter1/sft/loss"]) for h in history if "iter1/sft/loss" in h]
    assert sft == [(s[0], pytest.approx(s[1])) for s in steps]
    assert [h["checkpoint"] for h in history if "eval/ood/arith_add4/pass@1" in h] == [0, 1, 2]
    tables = {key.removesuffix("/_type") for h in history for key, value in h.items() if value == "table-file"}
    assert {"layers/sft1", "layers/merge1", "merge_lab/iter1"} <= tables


def test_mlflow_local_store_holds_params_metrics_and_tables(tracked):
    needs("mlflow")
    from mlflow import MlflowClient

    home, run_id, steps = tracked
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=(home / "mlruns").as_uri())
    [run] = client.search_runs([client.get_experiment_by_name("imm").experiment_id], f"tags.`imm.run_id` = '{run_id}'")
    assert run.info.status == "FINISHED" and run.info.run_name == run_id
    assert run.data.params["sft.batch_size"] == "8" and run.data.params["method"] == "imm"
    history = client.get_metric_history(run.info.run_id, "iter1/sft/loss")
    assert sorted((m.step, m.value) for m in history) == [(s[0], pytest.approx(s[1])) for s in steps]
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "eval/id/arith_add3/pass_at_1")) == [0, 1, 2]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)} | \
        {a.path for folder in ("layers", "merge_lab") for a in client.list_artifacts(run.info.run_id, folder)}
    assert {"config.json", "layers/sft1.json", "merge_lab/iter1.json"} <= artifacts
    trials = json.loads(Path(client.download_artifacts(run.info.run_id, "merge_lab/iter1.json")).read_text())
    assert trials["columns"][:3] == ["trial", "alpha", "drop_rate"] and trials["data"][0][1] == 0.3


def test_a_missing_extra_and_an_unreachable_tracker_are_warnings_and_the_run_finishes(home, tmp_path):
    needs("mlflow")
    stub = tmp_path / "no-wandb"
    (stub / "wandb").mkdir(parents=True)
    (stub / "wandb" / "__init__.py").write_text("raise ImportError('wandb is not installed here')\n")
    env = run_env(MLFLOW_TRACKING_URI="http://127.0.0.1:9", MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
                  PYTHONPATH=os.pathsep.join([str(stub), str(Path(__file__).resolve().parent.parent)]))
    sets = FAST + ['report_to=["wandb","mlflow"]']
    out = imm("run", str(TINY_PRESET), *[a for kv in sets for a in ("--set", kv)], home=home, env=env)
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.split()[1]
    log = (home / "runs" / run_id / "engine.log").read_text()
    assert "warning: report_to wandb: the wandb package is not installed (pip install 'imm[wandb]')" in log
    assert "warning: report_to mlflow: cannot open (" in log and not re.search(r"^\S+ reporting to", log, re.M)
    assert f"run {run_id} finished" in log


class Failing:
    def __init__(self):
        self.calls = 0
        self.closed = False

    def config(self, config):
        pass

    def scalars(self, values, axis, step):
        self.calls += 1
        raise ConnectionError("the server went away")

    def table(self, key, columns, rows):
        pass

    def close(self):
        self.closed = True


class Recording(Failing):
    def __init__(self):
        super().__init__()
        self.scalar_calls = []

    def scalars(self, values, axis, step):
        self.scalar_calls.append((values, axis, step))


def test_a_tracker_that_fails_later_warns_once_and_the_others_go_on():
    logs, failing, fine = [], Failing(), Recording()
    trackers = Trackers({"wandb": failing, "tensorboard": fine}, logs.append)
    rows = [{"step": s, "loss": 1.0 / s, "lr": 1e-3, "grad_norm": 2.0, "tokens_per_s": None} for s in (1, 2)]
    trackers.sft_steps(2, rows)
    trackers.stage_done(2, "filter", {"samples": 10, "kept": 4, "yield_pct": 40.0}, {})
    assert failing.calls == 1 and failing.closed and list(trackers.backends) == ["tensorboard"]
    assert logs == ["warning: report_to wandb: ConnectionError: the server went away; wandb is off for the rest of this run"]
    assert fine.scalar_calls == [({"iter2/sft/loss": 1.0, "iter2/sft/lr": 1e-3, "iter2/sft/grad_norm": 2.0}, "iter2/sft/step", 1),
                                 ({"iter2/sft/loss": 0.5, "iter2/sft/lr": 1e-3, "iter2/sft/grad_norm": 2.0}, "iter2/sft/step", 2),
                                 ({"filter/yield_pct": 40.0, "filter/kept": 4, "filter/samples": 10}, "iteration", 2)]


def test_no_report_to_opens_nothing():
    logs = []
    trackers = open_trackers([], "run", Path("."), Path("."), {}, logs.append)
    assert not trackers and logs == []


@pytest.mark.bad_input
@pytest.mark.parametrize("value, field, allowed", [
    ('["tensorboard","neptune"]', "report_to[1]", "one of tensorboard, wandb, mlflow"),
    ('["wandb","wandb"]', "report_to", "each tracker at most once"),
    ("3", "report_to", "a list of strings"),
])
def test_report_to_names_only_known_trackers_once(value, field, allowed):
    with pytest.raises(ConfigError) as err:
        resolve(TINY_PRESET, [f"report_to={value}"])
    assert str(err.value).startswith(f"{field}: got") and allowed in str(err.value)
