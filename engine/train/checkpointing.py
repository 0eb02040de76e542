"""Training checkpoints of the hf SFT loop, so that a killed or stopped SFT stage continues from
its last one instead of starting over.

A checkpoint is taken after an optimizer step (the gradients are clear then) every
sft.checkpoint_every steps or sft.checkpoint_minutes minutes, whichever comes first, and when a
stop is asked for. It holds everything the rest of the run depends on: the fp32 weights (or bf16
weights and their fp32 masters, engine.train.master_weights), AdamW's
state, the schedule's position, the weight mask, the RNG states and the data position (epoch and
its optimizer steps done; each epoch's batches are rebuilt from its seed) with the loss history. One file,
replaced atomically by the next; resuming from it gives bit-for-bit the weights of an
uninterrupted run on the same device. It carries a fingerprint of the inputs (training data,
settings, starting model): a checkpoint of other inputs is ignored.
"""
from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class Position:
    """Where training stands: `batch` optimizer steps of `epoch` done, `step` in all, and every
    step's loss so far."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    losses: list[float] = field(default_factory=list)


class TrainingCheckpoints:
    """`restore` before the loop, `after_step` after each optimizer step, `remove` once the final
    model is saved. `before_save` runs before each save. `safe_point(when)` is called after each save: it may stop the stage (it raises
    StopRequested when a stop was asked for) or hold it for a test."""

    def __init__(self, path: Path, every: int, minutes: float, fingerprint: str,
                 stop_requested: Callable[[], bool] = lambda: False,
                 safe_point: Callable[[str], None] = lambda when: None, log: Callable[[str], None] = print,
                 before_save: Callable[[], None] = lambda: None):
        self.path, self.every, self.minutes, self.fingerprint = Path(path), every, minutes, fingerprint
        self.stop_requested, self.safe_point, self.log = stop_requested, safe_point, log
        self.before_save = before_save  # the step recorder's flush: the curve reaches the checkpoint first
        self._saved_at = time.monotonic()

    @property
    def enabled(self) -> bool:
        return bool(self.every or self.minutes)

    def restore(self, model, opt, sched, grad_mask) -> Position:
        """Load the last checkpoint into the model, optimizer, schedule, mask and RNGs, and return
        its position; a fresh Position when there is none (or it is of other inputs)."""
        import torch

        if not self.path.exists():
            return Position()
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        if state["fingerprint"] != self.fingerprint:
            self.log(f"sft: {self.path.name} is of other data, settings or model; training from the start")
            return Position()
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if grad_mask is not None and state["masks"] is not None:
            device = next(model.parameters()).device
            grad_mask.masks = [m.to(device) for m in state["masks"]]
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        random.setstate(state["rng"]["python"])
        position = Position(**state["position"])
        self.log(f"sft: resuming from the checkpoint at optimizer step {position.step} "
                 f"(epoch {position.epoch + 1}, {position.batch} of its steps done)")
        return position

    def after_step(self, step: int, total: int, position: Callable[[], Position], model, opt, sched, grad_mask) -> None:
        """After optimizer step `step`: save a checkpoint when one is due or a stop was asked for
        (not after the last step: the final model follows), then pass the stage's safe point.
        `position` makes the Position (it reads the losses: a GPU sync, so only on a save)."""
        if not self.enabled or step >= total:
            return
        due = (self.every and step % self.every == 0) or \
              (self.minutes and time.monotonic() - self._saved_at >= 60 * self.minutes)
        if due or self.stop_requested():
            self.before_save()
            self.save(position(), model, opt, sched, grad_mask)
            self.safe_point(f"checkpoint{step}")

    def save(self, position: Position, model, opt, sched, grad_mask) -> None:
        import torch

        from ..durable import write_then_publish

        state = {
            "fingerprint": self.fingerprint,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "masks": None if grad_mask is None else grad_mask.masks,
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "position": asdict(position),
        }
        # the weights, AdamW's two moments and any fp32 masters (a full disk says so)
        found = [*state["model"].values(), *state["optimizer"].get("masters", []),
                 *(v for s in state["optimizer"]["state"].values() for v in s.values() if torch.is_tensor(v))]
        nbytes = sum({t.data_ptr(): t.numel() * t.element_size() for t in found}.values())
        write_then_publish(self.path, lambda tmp: torch.save(state, tmp), nbytes)
        self._saved_at = time.monotonic()
        self.log(f"sft: checkpoint at optimizer step {position.step} ({self.path.stat().st_size / 2**20:.1f} MiB)")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
