"""The IMM loop: runs a run's pending stages in plan order and records each in SQLite.

Stage handlers write their artifacts to temporary paths and rename them into place; a stage is
marked done (with its rows: metrics, diagnostics; in one transaction) only after that. `Engine.execute` skips done
stages, so resuming after a crash or kill restarts the first unfinished stage from scratch.
Every stage seeds its randomness from (run seed, iteration, stage), so a resumed run produces
the same results as an uninterrupted one.
"""
from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import random
import signal
import time
from pathlib import Path

from .config import BUILTIN_PREFIX, RunConfig, resolve
from .errors import RunStateError, UserError
from .jsonl import read_records, write_records
from .runstate.lock import run_lock
from .runstate.paths import RunPaths
from .runstate.store import Store, now


def stage_seed(seed: int, iteration: int, stage: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{iteration}:{stage}".encode()).digest()[:4], "little")


def hold_for_test(paths: RunPaths, t: int, stage: str, when: str) -> None:
    """Fault-injection point for the kill/resume tests: with IMM_TEST_HOLD="T:STAGE:WHEN" the
    engine announces itself in a HOLDING file and waits there until the test kills it or deletes
    the file."""
    if os.environ.get("IMM_TEST_HOLD") == f"{t}:{stage}:{when}":
        marker = paths.root / "HOLDING"
        marker.write_text(f"{os.getpid()}\n")
        while marker.exists():
            time.sleep(0.05)


class Engine:
    def __init__(self, store: Store, run_id: str, echo: bool = True):
        row = store.run(run_id)
        if row is None:
            raise RunStateError(f"no run {run_id!r} in {store.home}")
        self.store, self.run_id = store, row["id"]
        self.cfg: RunConfig = resolve(json.loads(row["config"]))
        self.paths = RunPaths(Path(row["run_dir"]))
        self.log = self._logger(echo)
        self.stop_requested = False

    def _logger(self, echo: bool) -> logging.Logger:
        log = logging.getLogger(f"imm.{self.run_id}")
        log.setLevel(logging.INFO)
        log.propagate = False
        for old in log.handlers:
            old.close()
        log.handlers.clear()
        fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
        handlers = [logging.FileHandler(self.paths.log)] + ([logging.StreamHandler()] if echo else [])
        for h in handlers:
            h.setFormatter(fmt)
            log.addHandler(h)
        return log

    # ------------------------------------------------------------ paths of checkpoints
    @property
    def base_path(self) -> str:
        if self.cfg.model.path.startswith(BUILTIN_PREFIX):
            from .models.builtin import builtin_folder

            return str(builtin_folder(self.store.home, self.cfg.model.path.removeprefix(BUILTIN_PREFIX)))
        return self.cfg.model.path

    def prev_path(self, t: int) -> str:
        """The model iteration t starts from: the base, then Merge_{t-1} (imm) or SFT_{t-1}."""
        if t == 1:
            return self.base_path
        return str(self.paths.merged(t - 1) if self.cfg.method == "imm" else self.paths.sft(t - 1))

    # ------------------------------------------------------------ driver
    def execute(self) -> str:
        """Run every pending stage; returns the run's final status (done or stopped)."""
        self.paths.root.mkdir(parents=True, exist_ok=True)
        with run_lock(self.paths.lock, self.run_id):
            self.paths.stop_request.unlink(missing_ok=True)
            previous = signal.signal(signal.SIGTERM, self._on_sigterm)
            try:
                return self._execute()
            finally:
                signal.signal(signal.SIGTERM, previous)

    def _on_sigterm(self, *_):
        self.stop_requested = True
        self.log.info("stop requested (SIGTERM): stopping after the current stage")

    def _execute(self) -> str:
        self.store.update_run(self.run_id, status="running", pid=os.getpid(), error=None)
        self.log.info(f"run {self.run_id}: engine pid {os.getpid()}")
        for row in self.store.stages(self.run_id):
            if row["status"] == "done":
                continue
            if self.stop_requested or self.paths.stop_request.exists():
                self.paths.stop_request.unlink(missing_ok=True)
                self.store.update_run(self.run_id, status="stopped", pid=None)
                self.log.info("stopped at a safe point; `imm resume` continues from here")
                return "stopped"
            self._run_stage(row["iteration"], row["stage"])
        self.store.update_run(self.run_id, status="done", pid=None)
        self.log.info(f"run {self.run_id} finished")
        return "done"

    def _run_stage(self, t: int, stage: str) -> None:
        import torch

        self.store.set_stage(self.run_id, t, stage, status="running", started=now(), ended=None, error=None)
        self.log.info(f"[iter {t}] {stage}: started")
        seed = stage_seed(self.cfg.seed, t, stage)
        random.seed(seed)
        torch.manual_seed(seed)
        try:
            hold_for_test(self.paths, t, stage, "start")
            artifact, info, rows = getattr(self, f"stage_{stage}")(t, seed)
            hold_for_test(self.paths, t, stage, "end")
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            self.store.set_stage(self.run_id, t, stage, status="failed", ended=now(), error=error)
            self.store.update_run(self.run_id, status="failed", pid=None, error=f"[iter {t}] {stage}: {error}")
            self.log.error(f"[iter {t}] {stage}: failed: {error}")
            raise
        finally:
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        self.store.finish_stage(self.run_id, t, stage, artifact=str(artifact or ""), info=info, rows=rows)
        summary = " ".join(["done", *(f"{k}={v}" for k, v in info.items())])
        self.log.info(f"[iter {t}] {stage}: {summary}")

    # ------------------------------------------------------------ helpers shared by stages
    def device_and_dtype(self):
        from .models.loading import resolve_device, torch_dtype

        device = resolve_device(self.cfg.device)
        return device, torch_dtype(self.cfg.model.dtype, device)

    def generator(self, path: str, batch_size: int, dtype_name: str | None = None):
        from .models.generation import make_generator
        from .models.loading import torch_dtype

        device, dtype = self.device_and_dtype()
        if dtype_name:
            dtype = torch_dtype(dtype_name, device)
        return make_generator(self.cfg.generation.backend, path, device, dtype, batch_size)

    def tasks(self):
        from .tasks import get_task

        specs = self.cfg.tasks.specs
        return {name: (get_task(name, specs.get(name)), "id" if i == 0 else "ood") for i, name in enumerate(self.cfg.all_tasks())}

    def train_examples(self, task):
        examples = task.load(task.train_split)
        size = self.cfg.tasks.train_size
        if size and size < len(examples):
            examples = random.Random(f"{self.cfg.seed}:train").sample(examples, size)
        return examples

    def evaluate(self, path: str, checkpoint: str, t: int, seed: int, size: int | None = None,
                 samples_path: Path | None = None) -> list[dict]:
        """Metric rows of one checkpoint on every task (size: questions per task, default eval_size)."""
        from .stages.evaluate import evaluate

        gen = self.generator(path, self.cfg.eval.batch_size)
        rows = evaluate(gen, self.tasks(), self.cfg.eval, self.cfg.tasks.eval_size if size is None else size, seed,
                        samples_path=samples_path or self.paths.eval_samples(t, checkpoint), chat=self.cfg.model.chat_template)
        for r in rows:
            self.log.info(f"[iter {t}] eval {checkpoint} {r['task']} ({r['domain']}) {r['metric']} = {r['value']:.1f}% (n={r['n']})")
        return [{"checkpoint": checkpoint, "iteration": t, **r} for r in rows]

    # ------------------------------------------------------------ stages
    def stage_build(self, t, seed):
        from .models.builtin import ensure_builtin

        folder = ensure_builtin(self.store.home, self.cfg.model.path.removeprefix(BUILTIN_PREFIX), self.log.info)
        return folder, {}, {}

    def stage_eval(self, t, seed):
        self.paths.iteration(t).mkdir(exist_ok=True)
        if t == 0:
            return "", {}, {"metrics": self.evaluate(self.base_path, "base", 0, seed)}
        metrics = self.evaluate(str(self.paths.sft(t)), f"sft{t}", t, seed)
        if self.cfg.method == "imm":
            metrics += self.evaluate(str(self.paths.merged(t)), f"merge{t}", t, seed)
        return "", {}, {"metrics": metrics}

    def stage_generate(self, t, seed):
        from .stages.evaluate import build_prompts

        g, teacher = self.cfg.generation, self.cfg.teacher
        task = self.tasks()[self.cfg.tasks.id][0]
        examples = self.train_examples(task)
        # Distillation: the teacher writes the samples (in its own prompt format) instead of the model.
        chat = teacher.chat_template if teacher.path else self.cfg.model.chat_template
        prompts = build_prompts(task, examples, g.fewshot, seed, chat)
        if teacher.path:
            gen = self.generator(teacher.path, g.batch_size, teacher.dtype)
        else:
            gen = self.generator(self.prev_path(t), g.batch_size)
        records = []
        for temperature in g.temperatures:
            outs = gen.generate(prompts, temperature, g.k, g.max_new_tokens, task.stop_sequences)
            for ex, completions in zip(examples, outs):
                records += [
                    {"id": ex.id, "question": ex.question, "gold": ex.answer, "temperature": temperature,
                     "sample": i, "completion": c}
                    for i, c in enumerate(completions)
                ]
            self.log.info(f"[iter {t}] generate: temperature {temperature}: {len(examples) * g.k} samples")
        self.paths.iteration(t).mkdir(exist_ok=True)
        write_records(self.paths.samples(t), records)
        info = {"questions": len(examples), "samples": len(records), "generator": teacher.path or "model"}
        return self.paths.samples(t), info, {}

    def stage_filter(self, t, seed):
        from .tasks.base import Example

        task = self.tasks()[self.cfg.tasks.id][0]
        samples = read_records(self.paths.samples(t), "samples")
        kept, seen, solved = [], set(), set()
        for r in samples:
            ex = Example(id=r["id"], question=r["question"], answer=r["gold"])
            _, correct = task.grade(r["completion"], ex)
            key = (r["id"], r["completion"].strip())
            if correct and key not in seen:
                seen.add(key)
                solved.add(r["id"])
                prompt = task.messages(ex, []) if self.cfg.model.chat_template else task.prompt(ex, [])
                kept.append({**r, "prompt": prompt, "response": r["completion"].strip()})
        write_records(self.paths.kept(t), kept)
        info = {"samples": len(samples), "kept": len(kept), "yield_pct": round(100 * len(kept) / max(1, len(samples)), 1),
                "questions_solved": len(solved)}
        return self.paths.kept(t), info, {}

    def sft_pairs(self, t: int, seed: int) -> list[tuple[str, str]]:
        """This iteration's kept data, plus earlier iterations' as the method says."""
        current = read_records(self.paths.kept(t), "kept samples")
        earlier = [r for s in range(1, t) for r in read_records(self.paths.kept(s), "kept samples")]
        if self.cfg.method == "accumulate":
            data = earlier + current
        elif self.cfg.method == "mixture" and earlier:
            n_mix = min(len(earlier), round(self.cfg.mixture.share * len(current)))
            data = current + random.Random(seed).sample(earlier, n_mix)
        else:
            data = current
        return [(r["prompt"], r["response"]) for r in data]

    def stage_sft(self, t, seed):
        from .models.loading import clear_stale

        if self.cfg.sft.backend == "deepspeed":
            from .train.deepspeed_launcher import train
        else:
            from .train.sft import train

        pairs = self.sft_pairs(t, seed)
        if not pairs:
            raise UserError(f"iteration {t}: the filter kept no correct samples to fine-tune on "
                            "(raise generation.k or add temperatures, or start from a stronger model)")
        out = self.paths.sft(t)
        clear_stale(out)
        device, dtype = self.device_and_dtype()
        info = train(Path(self.prev_path(t)), pairs, self.cfg.sft, out, device, dtype, seed, self.log.info)
        return out, info, {}

    def stage_merge(self, t, seed):
        m = self.cfg.merge
        out = self.paths.merged(t)
        return out, self.merge_into(t, out, m.alpha, m.drop_rate, stage_seed(m.seed, t, "merge")), {}

    def merge_into(self, t: int, out: Path, alpha: float, drop_rate: float, seed: int) -> dict:
        """Merge base, prev_t and SFT_t into the new folder `out` with the run's merge mode."""
        from .merge.stream import merge_checkpoints
        from .models.loading import clear_stale

        m = self.cfg.merge
        clear_stale(out)
        device = self.device_and_dtype()[0] if m.device == "auto" else m.device
        info = {"alpha": alpha, "drop_rate": drop_rate, "seed": seed, "mode": m.mode}
        layer_scale = None
        if m.mode == "importance":
            from .diagnostics import iimm_layer_scales, layer_scale_fn

            scales = iimm_layer_scales(self.importance(t).layers)
            layer_scale = layer_scale_fn(scales)
            info["layer_scales"] = {str(n): round(v, 4) for n, v in sorted(scales.items())}
        merge_checkpoints(base=self.base_path, prev=self.prev_path(t), sft=str(self.paths.sft(t)), out=str(out),
                          alpha=alpha, drop_rate=drop_rate, seed=seed, device=device, layer_scale=layer_scale)
        return info

    def importance(self, t: int):
        """Layer importance of the model iteration t starts from, computed once and kept as JSON
        (IIMM's merge and the diagnostics stage both use it)."""
        from .diagnostics import Importance, importance, load_pairs, task_pairs
        from .models.loading import write_atomic

        path = self.paths.importance(t)
        if path.exists():
            return Importance.from_dict(json.loads(path.read_text()))
        a = self.cfg.analyze
        if a.data:
            pairs = load_pairs(a.data, a.limit)
        else:  # the in-domain task's train split (a [tasks.NAME] custom task too)
            task = self.tasks()[self.cfg.tasks.id][0]
            pairs = task_pairs(task, task.train_split)[: a.limit]
        device = self.device_and_dtype()[0]
        imp = importance(self.prev_path(t), pairs, batch_size=a.batch_size, max_length=self.cfg.sft.max_length, device=device)
        self.paths.iteration(t).mkdir(exist_ok=True)
        write_atomic(path, json.dumps(imp.to_dict()))
        return imp

    def stage_analyze(self, t, seed):
        """Importance of the model before SFT vs weight change to SFT_t (and Merge_t): per layer,
        per module, with the Spearman verdict."""
        from .diagnostics import build_report, weight_change
        from .models.loading import write_atomic

        imp = self.importance(t)
        targets = {f"sft{t}": self.paths.sft(t)}
        if self.cfg.method == "imm":
            targets[f"merge{t}"] = self.paths.merged(t)
        reports = {name: build_report(weight_change(self.prev_path(t), folder), imp) for name, folder in targets.items()}
        write_atomic(self.paths.diagnostics(t), json.dumps(reports, indent=1))
        layer_rows, verdict_rows = [], []
        for name, rep in reports.items():
            layer_rows += [{"iteration": t, "checkpoint": name, **{k: v for k, v in row.items() if k != "modules"},
                            "modules": json.dumps(row["modules"])} for row in rep["layers"]]
            top = rep["top_quarter"]
            verdict_rows.append({"iteration": t, "checkpoint": name, "spearman": rep["spearman"], "verdict": rep["verdict"],
                                 "threshold": rep["threshold"], "top_importance": json.dumps(top["importance"]),
                                 "top_change": json.dumps(top["weight_change"]), "top_overlap": json.dumps(top["overlap"])})
            self.log.info(f"[iter {t}] analyze {name}: spearman(importance, weight change) = "
                          f"{rep['spearman'] if rep['spearman'] is None else round(rep['spearman'], 3)} -> {rep['verdict']}; "
                          f"top-quarter layers by importance {top['importance']}, by change {top['weight_change']}")
        info = {name: {"spearman": rep["spearman"], "verdict": rep["verdict"]} for name, rep in reports.items()}
        return self.paths.diagnostics(t), info, {"layer_stats": layer_rows, "verdicts": verdict_rows}
