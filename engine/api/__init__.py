"""The engine's front door, for the app and the `imm` command alike.

Read functions (SQLite opened read-only, run folders) return frozen dataclasses and load no
torch, numpy, transformers, safetensors or sqlite-utils; actions start engine processes detached
(they survive the caller and its terminal) or, where asked, run in the foreground. Every function
takes `home=None`: then $IMM_HOME, then ./imm-runs.
"""
from .actions import (
    EXPORT_FORMATS, adopt_trial, bundled_presets_dir, compare, config_toml, dry_run, export, preset_path, presets,
    resolved_config,
    resume, save_preset, start_run, start_sweep, stop, user_presets_dir, validate,
)
from .models import (
    Adoption, Comparison, FieldError, LayerStat, ModuleStat, PresetInfo, Progress, ResultRow, RunDetail, RunSummary,
    Sample, StageRow, Started, StepPoint, SystemPoint, Trial, Verdict, checkpoint_label, checkpoint_order,
    result_order,
)
from .reads import (
    layer_stats, list_runs, log_path, progress, read_log, results, run_detail, sample_sets, samples,
    sft_steps, system_history, tail_log, trials, verdicts,
)
from ..tools import analyze_checkpoints, grade_file, merge_checkpoints, parse_task_spec
from ..domain import Checkpoint, CheckpointKind, Domain, GenerationBackend, Method, SFTBackend, TrialStatus
from ..plain_text import clean, json_line
from ..results_table import render_text, trial_table
from ..runstate.machine import GpuReading, MachineSample, Sampler
from ..runstate.names import RunStatus, Stage, StageStatus
from ..runstate.paths import home_dir, write_problem

__all__ = [name for name in dir() if not name.startswith("_")]
