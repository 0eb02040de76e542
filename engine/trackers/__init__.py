"""The lab's own tracker: what a run measures, also written to TensorBoard, Weights & Biases or
MLflow (`report_to`, any subset; none by default) through those projects' own client libraries,
installed as extras (`pip install imm[tensorboard]`, `imm[wandb]`, `imm[mlflow]`).

The engine calls `Trackers` with the run's events: its config, every SFT step's batch (loss, lr,
gradient norm, tokens/s), each finished stage's rows (pass@k per checkpoint, ID and OOD; the
filter's yield; layer diagnostics as tables; the verdict's Spearman) and the sweep's trials. Each
backend turns them into scalars (a key, a value, a step on a named axis) and tables.

A tracker is an aid, never a reason for a run to fail: a missing extra, a tracker that cannot be
reached or one that fails later is one warning in the run's log, and that tracker is off for the
rest of the process; the run goes on.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable, Protocol

from ..results_table import checkpoint_order

# report_to name -> (module of engine.trackers, the package its client needs, the extra that brings it)
BACKENDS = {
    "tensorboard": ("tb_writer", "tensorboard", "tensorboard"),
    "wandb": ("wandb_run", "wandb", "wandb"),
    "mlflow": ("mlflow_run", "mlflow", "mlflow"),
}
SFT_METRICS = ("loss", "lr", "grad_norm", "tokens_per_s")
LAYER_COLUMNS = ("layer", "importance", "importance_pct", "weight_change", "weight_change_pct")
TRIAL_COLUMNS = ("trial", "alpha", "drop_rate", "seed", "subset", "task", "domain", "metric", "value")


class Backend(Protocol):
    def config(self, config: dict) -> None: ...
    def scalars(self, values: dict[str, float], axis: str, step: int) -> None: ...
    def table(self, key: str, columns: tuple[str, ...], rows: list[list]) -> None: ...
    def close(self) -> None: ...


def checkpoint_step(checkpoint: str) -> int:
    """The x of a checkpoint on the `checkpoint` axis: Base 0, SFT1 1, Merge1 2, SFT2 3, ..."""
    t, merged = checkpoint_order(checkpoint)
    return max(0, 2 * t - 1 + merged)


class Trackers:
    """The run's trackers: every call goes to each open backend; a failing one warns once and is
    dropped."""

    def __init__(self, backends: dict[str, Backend], log: Callable[[str], None]):
        self.backends, self.log = dict(backends), log

    def __bool__(self) -> bool:
        return bool(self.backends)

    def _each(self, call: Callable[[Backend], None]) -> None:
        for name, backend in list(self.backends.items()):
            try:
                call(backend)
            except Exception as exc:  # noqa: BLE001 - a tracker never fails the run
                self.log(f"warning: report_to {name}: {type(exc).__name__}: {exc}; {name} is off for the rest of this run")
                del self.backends[name]
                try:
                    backend.close()
                except Exception:  # noqa: BLE001 - already failing: nothing more to say
                    pass

    # ------------------------------------------------------------ the run's events
    def config(self, config: dict) -> None:
        self._each(lambda b: b.config(config))

    def sft_steps(self, t: int, rows: list[dict]) -> None:
        """A batch of iteration t's SFT steps (engine.runstate.steps rows)."""
        for r in rows:
            values = {f"iter{t}/sft/{m}": r[m] for m in SFT_METRICS if r.get(m) is not None}
            self._each(lambda b: b.scalars(values, f"iter{t}/sft/step", r["step"]))

    def stage_done(self, t: int, stage: str, info: dict, rows: dict[str, list[dict]]) -> None:
        """What a finished stage measured: metrics (eval), the yield (filter), diagnostics (analyze)."""
        if stage == "filter" and "yield_pct" in info:
            values = {"filter/yield_pct": info["yield_pct"], "filter/kept": info.get("kept", 0),
                      "filter/samples": info.get("samples", 0)}
            self._each(lambda b: b.scalars(values, "iteration", t))
        by_checkpoint: dict[str, dict[str, float]] = {}
        for m in rows.get("metrics", []):
            key = f"eval/{m['domain']}/{m['task']}/{m['metric']}"
            by_checkpoint.setdefault(m["checkpoint"], {})[key] = m["value"]
        for checkpoint, values in by_checkpoint.items():
            self._each(lambda b: b.scalars(values, "checkpoint", checkpoint_step(checkpoint)))
        layers: dict[str, list[list]] = {}
        for s in rows.get("layer_stats", []):
            layers.setdefault(s["checkpoint"], []).append([s.get(c) for c in LAYER_COLUMNS])
        for checkpoint, table_rows in layers.items():
            self._each(lambda b: b.table(f"layers/{checkpoint}", LAYER_COLUMNS, table_rows))
        for v in rows.get("verdicts", []):
            if v.get("spearman") is not None:
                kind = v["checkpoint"].rstrip("0123456789")
                self._each(lambda b: b.scalars({f"diagnostics/{kind}/spearman": v["spearman"]}, "iteration", v["iteration"]))

    def trials(self, t: int, trials: list[dict]) -> None:
        """The sweep's finished trials of iteration t (rows of the sweeps table), as one table."""
        table_rows = [[tr["id"], tr["alpha"], tr["drop_rate"], tr["seed"], tr["subset"] or 0, r["task"], r["domain"],
                       r["metric"], r["value"]]
                      for tr in trials for r in tr["results"]]
        if table_rows:
            self._each(lambda b: b.table(f"merge_lab/iter{t}", TRIAL_COLUMNS, table_rows))

    def close(self) -> None:
        self._each(lambda b: b.close())
        self.backends.clear()


def open_trackers(report_to: list[str], run_id: str, run_dir: Path, home: Path, config: dict,
                  log: Callable[[str], None]) -> Trackers:
    """The backends of `report_to` that open; a missing extra or a tracker that cannot be reached
    is a warning in the log. Each gets the config at once."""
    backends: dict[str, Backend] = {}
    for name in report_to:
        module_name, package, extra = BACKENDS[name]
        try:
            importlib.import_module(package)
        except ImportError:
            log(f"warning: report_to {name}: the {package} package is not installed (pip install 'imm[{extra}]'); "
                f"not reporting to {name}")
            continue
        try:
            module = importlib.import_module(f".{module_name}", __name__)
            backends[name] = module.open_backend(run_id, run_dir, home)
        except Exception as exc:  # noqa: BLE001 - an unreachable server, bad credentials: the run goes on
            log(f"warning: report_to {name}: cannot open ({type(exc).__name__}: {exc}); not reporting to {name}")
    trackers = Trackers(backends, log)
    trackers.config(config)
    if trackers:
        log(f"reporting to {', '.join(trackers.backends)}")
    return trackers


def no_trackers() -> Trackers:
    return Trackers({}, lambda _: None)
