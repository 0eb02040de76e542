"""bf16 weights with an fp32 master copy held by the optimizer (sft.precision = "bf16").

The model runs in bf16: no fp32 -> bf16 weight casts in every micro-batch under autocast (the
largest single item of the 1.5B profile, benchmarks/RESULTS.md "SFT on GPU"), half the bytes of
weights and activations. Backward's bf16 gradient of each parameter is added into the fp32
gradient of its master copy as soon as it exists and then freed, so the micro-batches of a step
accumulate in fp32; AdamW steps the fp32 masters and the bf16 weights are copied from them. An
update below a bf16 weight's resolution (a relative 2^-9) accumulates in the master instead of
being rounded away. Device-independent (bf16 matmuls run on the CPU too, slowly).

The optimizer's state_dict carries the masters, so a training checkpoint (model weights, then
optimizer state) resumes to the same fp32 values; `finish` leaves the model in fp32 holding them.
"""
from __future__ import annotations


def master_adamw(model, groups: list[dict], **adamw):
    """AdamW over fp32 master copies of the parameters in `groups` (param_groups of `model`, which
    is fp32 on entry); casts the model to bf16 and hooks its gradients into the masters."""
    import torch

    class MasterAdamW(torch.optim.AdamW):
        def __init__(self):
            self.model = model
            # in model.parameters() order, as the weight mask and the gradient norm see them
            self.weights = [p for p in model.parameters() if p.requires_grad]
            master_of = {id(p): p.detach().clone().float() for p in self.weights}
            self.masters = [master_of[id(p)] for p in self.weights]
            super().__init__([{**g, "params": [master_of[id(p)] for p in g["params"]]} for g in groups], **adamw)
            model.to(torch.bfloat16)  # the same Parameter objects, now bf16
            self.hooks = [p.register_post_accumulate_grad_hook(self._gather(m)) for p, m in zip(self.weights, self.masters)]

        @staticmethod
        def _gather(master):
            def hook(weight):
                if master.grad is None:
                    master.grad = weight.grad.float()
                else:
                    master.grad.add_(weight.grad)
                weight.grad = None
            return hook

        @torch.no_grad()
        def step(self, closure=None):
            loss = super().step(closure)
            self._copy_to_weights()
            return loss

        def _copy_to_weights(self):
            for w, m in zip(self.weights, self.masters):
                w.copy_(m)

        def state_dict(self):
            return {**super().state_dict(), "masters": self.masters}

        @torch.no_grad()
        def load_state_dict(self, state_dict):
            state_dict = dict(state_dict)
            for m, saved in zip(self.masters, state_dict.pop("masters"), strict=True):
                m.copy_(saved)
            super().load_state_dict(state_dict)
            self._copy_to_weights()

        @torch.no_grad()
        def finish(self) -> None:
            """Unhook the gradients and leave the model in fp32 with the masters' values."""
            for h in self.hooks:
                h.remove()
            self.model.float()
            for w, m in zip(self.weights, self.masters):
                w.copy_(m)

    return MasterAdamW()


def trained_tensors(model, opt) -> list:
    """The tensors whose gradients an optimizer step reads (masking, clipping): the fp32 masters
    of a master_adamw, else the model's parameters."""
    return getattr(opt, "masters", None) or list(model.parameters())
