"""What the API does to runs: create and start them, resume, stop, sweep, adopt, export, and the
config helpers a form needs (validate field by field, dry run, presets). Engine work runs in a
detached process (own session, survives the caller) unless a caller asks for the foreground."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ..config import flatten
from ..durable import write_atomic
from ..errors import ConfigError, RunStateError, UserError
from ..config.sources import bundled_dir as bundled_presets_dir, preset_files, user_dir as user_presets_dir  # noqa: F401 - re-exported
from ..runstate.launcher import pid_alive, request_stop, spawn_detached
from ..runstate.names import RunStatus, StageStatus
from ..runstate.paths import RunPaths, home_dir, private_files, require_run_folder, run_paths
from .models import Comparison, FieldError, PresetInfo, Started
from .reads import find_run, layer_stats, live_status, reader, results, run_detail, run_status, system_history

def _store(home):
    from ..runstate.store import Store  # sqlite-utils: writers only

    return Store(home_dir(home))


def _foreground(home, run_id: str) -> str:
    """Run the engine in this process (the CLI without --detach); returns the final status."""
    from ..driver import run_engine

    store = _store(home)
    with private_files():  # as the detached engine (python -m engine) writes them
        try:
            return run_engine(store, run_id)
        except (UserError, RunStateError):
            raise
        except Exception:
            # A failed stage is recorded (its error with any hint, the run failed, engine.log): the
            # caller reports it as the run's end. Anything else is a bug and goes up.
            if store.run(run_id)["status"] != RunStatus.FAILED:
                raise
            return RunStatus.FAILED


# ------------------------------------------------------------ config


def validate(preset, overrides: list[str] | tuple[str, ...] = ()) -> list[FieldError]:
    """Every field the engine refuses, as (field, value, allowed); [] when the config is valid.
    An error in the preset file itself (unreadable, not TOML) is the one error then."""
    from ..config import resolve

    try:
        resolve(preset, list(overrides))
    except ConfigError as exc:
        return [FieldError(e.path, e.value, e.allowed) for e in exc.errors]
    except UserError as exc:
        return [FieldError("preset", str(preset), str(exc))]
    return []


def dry_run(preset, overrides=()) -> str:
    """The resolved plan (stages, data sizes, expected samples); loads no model, writes nothing."""
    from ..config import resolve
    from ..dryrun import describe

    return describe(resolve(preset, list(overrides)))


def resolved_config(preset, overrides=()) -> dict:
    from ..config import resolve

    return resolve(preset, list(overrides)).to_dict()


def config_toml(config: dict) -> str:
    """A resolved config (e.g. RunDetail.config) as preset TOML."""
    from ..config import to_toml

    return to_toml(config)


def presets(home=None) -> list[PresetInfo]:
    """The bundled presets and the user's presets folder (user ones after, by name)."""
    out = []
    for source, path in preset_files():
        comments = []
        for line in path.read_text(errors="replace").splitlines():
            if not line.startswith("#"):
                break
            comments.append(line.lstrip("# ").strip())
        out.append(PresetInfo(name=path.stem, path=path, source=source, description=" ".join(comments)))
    return out


def preset_path(name: str, folder: Path | None = None) -> Path:
    """Where a new preset NAME goes: NAME.toml in the user presets folder (or `folder`). The name
    follows the rule of a run's `name` (what `imm run` checks; `x.toml` is the name `x`), and must
    not be taken; else a UserError naming the rule."""
    from ..config import check_name

    stem = name.strip().removesuffix(".toml")
    check_name("preset name", stem)
    path = (Path(folder) if folder else user_presets_dir()) / f"{stem}.toml"
    if path.exists():
        raise UserError(f"preset name: {path} exists; allowed: a name not taken")
    return path


def save_preset(name: str, preset, overrides=(), folder: Path | None = None, source: str | None = None) -> Path:
    """Write preset (a file or a config dict) + overrides, resolved, as a new preset NAME.toml in
    the user presets folder (or `folder`; see preset_path), readable by its owner only like the
    home, its first line saying where it came from (`source`, else the preset's path); refuses a
    bad or taken name and an invalid config (nothing is written then)."""
    from ..config import resolve, to_toml

    path = preset_path(name, folder)
    cfg = resolve(preset, list(overrides)).to_dict()
    cfg["name"] = path.stem
    origin = source or (str(preset) if not isinstance(preset, dict) else "a run's config")
    with private_files():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, f"# saved by imm from {origin}\n" + to_toml(cfg))
    return path


# ------------------------------------------------------------ lifecycle


def start_run(preset, overrides=(), home=None, detach: bool = True,
              on_created: Callable[[str], None] | None = None) -> Started:
    """Validate, create the run (rows + folder), and run it: detached (returns at once) or in the
    foreground (returns when it ends). Nothing is written when the config is refused."""
    from ..config import resolve
    from ..runstate.plan import create_run

    cfg = resolve(preset, list(overrides))
    store = _store(home)
    run_id, paths = create_run(store, cfg, str(preset))
    if on_created:
        on_created(run_id)
    return _launch(home, run_id, paths, detach)


def _launch(home, run_id: str, paths: RunPaths, detach: bool) -> Started:
    if detach:
        store = _store(home)  # a database this imm cannot write is refused here, not in the detached engine
        require_run_folder(run_id, paths, any(s["status"] == StageStatus.DONE for s in store.stages(run_id)))
        pid = spawn_detached(home_dir(home), run_id, paths)
        # The engine records its pid itself once it runs; until then readers see the one we started.
        store.update_run(run_id, pid=pid)
        return Started(run_id, pid, paths.log, RunStatus.RUNNING)
    return Started(run_id, None, paths.log, _foreground(home, run_id))


def _require_idle(row: dict) -> None:
    if live_status(row) == RunStatus.RUNNING:
        raise RunStateError(f"run {row['id']} is running (engine pid {row['pid']})")
    if row.get("sweep_pid") and pid_alive(row["sweep_pid"]):
        raise RunStateError(f"run {row['id']} has a sweep running (pid {row['sweep_pid']}); wait for it to finish")


def resume(run: str, home=None, detach: bool = True, overrides=()) -> Started:
    """Continue from the first unfinished stage. Refused while an engine runs on it. `overrides`
    (KEY=VALUE) change settings in config.RESUMABLE_KEYS first, e.g. a batch size after running
    out of memory; they are validated, then recorded in the run's row and its config.json."""
    row = find_run(reader(home), run)
    paths = run_paths(home_dir(home), row["run_dir"])
    if all(s.status == StageStatus.DONE for s in run_detail(row["id"], home).stages):
        return Started(row["id"], None, paths.log, row["status"])
    _require_idle(row)
    if overrides:
        from ..config import resume_config
        from ..runstate.plan import write_config_copy
        from ..runstate.reader import stored_config

        cfg = resume_config(stored_config(row), list(overrides)).to_dict()
        _store(home).update_run(row["id"], config=json.dumps(cfg))
        write_config_copy(paths, cfg)
    return _launch(home, row["id"], paths, detach)


def stop(run: str, home=None) -> int:
    """Ask the run's engine to stop at its next safe point; returns its pid."""
    row = find_run(reader(home), run)
    if row["status"] != RunStatus.RUNNING or not pid_alive(row["pid"]):
        raise RunStateError(f"run {row['id']} is not running (status {live_status(row)})")
    request_stop(run_paths(home_dir(home), row["run_dir"]))
    return row["pid"]


def start_sweep(run: str, iteration: int, alphas: list[float], drops: list[float], seed: int | None = None,
                subset: int = 0, keep_weights: bool = False, home=None, detach: bool = True,
                log: Callable[[str], None] | None = None) -> list[int]:
    """Queue one trial per (alpha, p) of a finished iteration and start the sweep worker (unless
    one runs); each trial's row appears in `trials` as it finishes. Returns the queued ids."""
    from ..sweep import queue_sweep, work_queue

    r = reader(home)
    row = find_run(r, run)
    if live_status(row) == RunStatus.RUNNING:
        raise RunStateError(f"run {row['id']} is running (engine pid {row['pid']}); sweep once it stops or finishes")
    paths = run_paths(home_dir(home), row["run_dir"])
    require_run_folder(row["id"], paths, any_stage_done=True)  # nothing queued that no worker could run
    store = _store(home)
    ids = queue_sweep(store, row["id"], iteration, alphas, drops, seed=seed, subset=subset, keep_weights=keep_weights)
    if not detach:
        with private_files():
            work_queue(store, row["id"], log=log)
    elif not (row.get("sweep_pid") and pid_alive(row["sweep_pid"])):
        spawn_detached(home_dir(home), row["id"], paths, job="sweep")
    return ids


def adopt_trial(run: str, iteration: int, trial_id: int, home=None, detach: bool = False,
                log: Callable[[str], None] | None = None) -> Started:
    """Make a sweep trial iteration t's merge (re-merged, re-evaluated); later stages go back to
    pending and `resume` continues from it. detach runs it as an engine process."""
    from ..sweep import adopt, check_adoptable

    row = find_run(reader(home), run)
    _require_idle(row)
    paths = run_paths(home_dir(home), row["run_dir"])
    require_run_folder(row["id"], paths, any_stage_done=True)
    store = _store(home)
    if detach:
        check_adoptable(store, row["id"], iteration, trial_id)  # refuse now, not in a detached process
        pid = spawn_detached(home_dir(home), row["id"], paths, "adopt", ("--iter", str(iteration), "--trial", str(trial_id)))
        return Started(row["id"], pid, paths.log, row["status"])
    with private_files():
        adopt(store, row["id"], iteration, trial_id, log=log)
    return Started(row["id"], None, paths.log, find_run(reader(home), row["id"])["status"])


# ------------------------------------------------------------ export and compare

EXPORT_FORMATS = ("table", "md", "csv", "json")
# What exports as CSV only, and what it is: a row per layer (and module), SFT step, or sample and GPU.
CSV_ONLY = {"layers": "layer diagnostics", "curves": "SFT curves", "system": "system history"}


def export(run: str, fmt: str = "md", what: str = "results", home=None, path: str | Path | None = None,
           metric: str = "pass@1") -> str:
    """Results (table, md, csv, json: the `imm show` formats), the layer diagnostics, the SFT
    curves (every optimizer step) or the system history (csv) as text; with `path`, also written
    there (atomically) and the path returned."""
    from ..results_table import STEP_COLUMNS, render, render_csv

    r = reader(home)
    row = find_run(r, run)
    if what in CSV_ONLY and fmt != "csv":
        raise UserError(f"format: got {fmt!r}; allowed: csv ({CSV_ONLY[what]})")
    if what == "results":
        if fmt not in EXPORT_FORMATS:
            raise UserError(f"format: got {fmt!r}; allowed: {', '.join(EXPORT_FORMATS)}")
        text = render(fmt, {**row, "status": run_status(r.home, row)}, r.stages(row["id"]), r.metrics(row["id"]),
                      metric=metric, step_rows=r.sft_steps(row["id"]) if fmt == "json" else ())
    elif what == "curves":
        text = render_csv(list(STEP_COLUMNS), [["" if s[k] is None else str(s[k]) for k in STEP_COLUMNS]
                                               for s in r.sft_steps(row["id"])])
    elif what == "system":
        header = ["iteration", "stage", "ts", "cpu_pct", "mem_used", "mem_total", "gpu", "gpu_util", "gpu_mem_used",
                  "gpu_mem_total"]
        body = []
        for p in system_history(row["id"], home=home):
            base = [p.iteration, p.stage, p.ts, p.cpu_pct, p.mem_used, p.mem_total]
            body += [[*base, g.index, g.util, g.mem_used, g.mem_total] for g in p.gpus] or [[*base, "", "", "", ""]]
        text = render_csv(header, [[str(v) for v in b] for b in body])
    elif what == "layers":
        header = ["iteration", "checkpoint", "layer", "importance", "importance_pct", "weight_change",
                  "weight_change_pct", "module", "module_importance", "module_weight_change"]
        body = []
        for s in layer_stats(row["id"], home=home):
            base = [s.iteration, s.checkpoint, s.layer, s.importance, s.importance_pct, s.weight_change, s.weight_change_pct]
            body.append([*base, "", "", ""])
            body += [[*base, name, m.importance, m.weight_change] for name, m in s.modules.items()]
        text = render_csv(header, [["" if v is None else str(v) for v in b] for b in body])
    else:
        raise UserError(f"what: got {what!r}; allowed: results, layers, curves, system")
    if path is None:
        return text
    path = Path(path).expanduser()
    try:
        write_atomic(path, text + "\n")
    except OSError as exc:
        raise UserError(f"export path: cannot write {path} ({exc.strerror or exc}); allowed: a file in an existing, "
                        "writable folder") from None
    return str(path)


def compare(runs: list[str], home=None) -> Comparison:
    """Two or more runs: their summaries, results, and only the config keys that differ (the
    run's name among them)."""
    if len(runs) < 2:
        raise UserError(f"compare: got {len(runs)} run(s); allowed: two or more runs")
    details = [run_detail(r, home) for r in runs]
    flats = [flatten(d.config) for d in details]
    keys = sorted(set().union(*flats))
    diff = {k: tuple(f.get(k) for f in flats) for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1}
    return Comparison(runs=tuple(d.summary for d in details),
                      results={d.summary.id: tuple(results(d.summary.id, home)) for d in details}, config_diff=diff)
