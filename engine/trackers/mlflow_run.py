"""report_to "mlflow": one MLflow run per imm run (tagged imm.run_id, found again when the engine
resumes) in experiment $MLFLOW_EXPERIMENT_NAME (default "imm"), at $MLFLOW_TRACKING_URI, or else
in the home's own local store HOME/mlruns (MLflow's file store, which MLflow 3 only opens when
asked to: this default opts in). Metric names as MLflow allows them (pass@1 -> pass_at_1). The client API only (MlflowClient, no global active run): the
config as params and config.json, scalars as metrics with their step, tables as JSON artifacts
in log_table's layout (columns, data). mlflow-skinny is enough (imm[mlflow])."""
from __future__ import annotations

import os
import re
from pathlib import Path

from ..config import flatten

DEFAULT_EXPERIMENT = "imm"
TAG = "imm.run_id"
PARAMS_PER_BATCH = 100  # MLflow's limit per log_batch call
PARAM_MAX_CHARS = 6000
# An unreachable server: a few quick tries, then a warning, not MLflow's minutes of backoff
# (only where the user set neither).
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def metric_key(key: str) -> str:
    """MLflow's metric names allow letters, digits, _ - . space : / only: pass@1 -> pass_at_1."""
    return re.sub(r"[^\w\-. :/]", "_", key.replace("@", "_at_"))


def tracking_uri(home: Path) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return (Path(home) / "mlruns").resolve().as_uri()


class MlflowBackend:
    def __init__(self, run_id: str, home: Path):
        from mlflow import MlflowClient

        for key, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        self.client = MlflowClient(tracking_uri=tracking_uri(home))
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT)
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        found = self.client.search_runs([experiment_id], f"tags.`{TAG}` = '{run_id}'", max_results=1)
        self.run_id = found[0].info.run_id if found else \
            self.client.create_run(experiment_id, tags={TAG: run_id}, run_name=run_id).info.run_id
        if found:
            self.client.update_run(self.run_id, "RUNNING")

    def config(self, config: dict) -> None:
        from mlflow.entities import Param

        self.client.log_dict(self.run_id, config, "config.json")
        logged = {p for p in self.client.get_run(self.run_id).data.params}  # params cannot change: a resume keeps them
        params = [Param(k, str(v)[:PARAM_MAX_CHARS]) for k, v in flatten(config).items() if k not in logged]
        for i in range(0, len(params), PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[i:i + PARAMS_PER_BATCH])

    def scalars(self, values: dict[str, float], axis: str, step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(metric_key(k), float(v), now, int(step)) for k, v in values.items()])

    def table(self, key: str, columns, rows) -> None:
        self.client.log_dict(self.run_id, {"columns": list(columns), "data": [list(r) for r in rows]}, f"{key}.json")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def open_backend(run_id: str, run_dir: Path, home: Path) -> MlflowBackend:
    return MlflowBackend(run_id, home)
