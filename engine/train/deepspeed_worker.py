"""One rank of the `deepspeed` SFT backend; started by DeepSpeed's launcher (engine.train.deepspeed_launcher).

Reads the job spec written by the engine, trains with ZeRO (sft.zero_stage 2 or 3) in bf16 on the
objective of every backend (engine.train.loss: response tokens only, the token mean of each
optimizer step over all ranks, length-bucketed micro-batches, the chunked head loss), saves the
gathered 16-bit weights with save_16bit_model (rank 0 writes pytorch_model.bin) and, on rank 0, a
result JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def train_step(engine, step, device, world: int):
    """One optimizer step of this rank: engine.train.loss.accumulate_step through DeepSpeed's
    engine (over engine.train.loss.response_loss_module). DeepSpeed averages the ranks' gradients,
    so each rank's share of the step's token mean is scaled by `world`; its own 1 / grad-accum
    scaling is off (the mean is over the step's tokens already). Returns this rank's summed loss."""
    from engine.train.loss import accumulate_step

    def backward(loss, last: bool) -> None:
        engine.set_gradient_accumulation_boundary(last)
        engine.backward(loss * world, scale_wrt_gas=False)
        engine.step()

    return accumulate_step(engine, step, device, backward=backward)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--job", required=True)
    parser.add_argument("--local_rank", type=int, default=int(os.environ.get("LOCAL_RANK", 0)))
    args = parser.parse_args(argv)

    import deepspeed
    import torch
    import torch.distributed as dist

    from engine.config import SFTConfig
    from engine.jsonl import read_records
    from engine.models.loading import load_tokenizer
    from engine.runstate.names import PEAK_GPU_KEY
    from engine.train.deepspeed_launcher import ds_config
    from engine.train.loss import optimizer_step_batches, response_loss_module
    from engine.train.schedule import epoch_seed, lr_scheduler, optimizer_steps, warmup_steps
    from engine.train.textdata import encode_pairs

    spec = json.loads(Path(args.job).read_text())
    cfg = SFTConfig(**spec["sft"])
    seed = spec["seed"]
    init_path = spec["init_path"]
    trust_remote_code = spec.get("trust_remote_code", False)

    torch.cuda.set_device(args.local_rank)
    deepspeed.init_distributed()
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(seed)

    pairs = [(r["prompt"], r["response"]) for r in read_records(Path(spec["pairs"]), "the job's pairs")]
    tokenizer = load_tokenizer(init_path, padding_side="right", trust_remote_code=trust_remote_code)
    items = encode_pairs(tokenizer, pairs, cfg.max_length)
    total = optimizer_steps(len(items), cfg, world)
    warmup = warmup_steps(cfg.warmup, total)

    config = ds_config(cfg, world)
    from transformers import AutoModelForCausalLM
    from transformers.integrations import HfDeepSpeedConfig

    hf_ds = HfDeepSpeedConfig(config)  # noqa: F841 -- kept alive: from_pretrained partitions under zero.Init
    model = AutoModelForCausalLM.from_pretrained(init_path, dtype=torch.bfloat16, trust_remote_code=trust_remote_code)
    model.config.use_cache = False
    if cfg.grad_checkpointing:
        model.gradient_checkpointing_enable()
    module = response_loss_module(model, torch.bfloat16)
    if cfg.zero_stage == 3:  # the tied head's weight is read in the loss, outside its own module
        deepspeed.zero.register_external_parameter(module, model.get_output_embeddings().weight)
    engine, _, _, _ = deepspeed.initialize(
        model=module, model_parameters=module.parameters(), config=config,
        lr_scheduler=lambda opt: lr_scheduler(opt, total, warmup, cfg.schedule),
    )
    engine.train()
    device = torch.device("cuda", args.local_rank)
    if rank == 0:
        print(f"sft worker: {world} rank(s), {len(items)} examples, {total} optimizer steps "
              f"(micro batch {cfg.batch_size}, grad accum {cfg.grad_accum}, ZeRO stage {cfg.zero_stage}, "
              f"warm-up {warmup})", flush=True)

    started = time.time()
    epoch_losses, last, tokens = [], None, 0
    for epoch in range(cfg.epochs):
        loss_sum, targets = torch.zeros((), device=device), 0
        for step in optimizer_step_batches(items, cfg.batch_size, cfg.grad_accum, tokenizer.pad_token_id,
                                           epoch_seed(seed, epoch), rank, world):
            part = train_step(engine, step, device, world)
            loss_sum += part
            targets += step.targets
            tokens += step.tokens
            last = part / max(1, step.targets)
        dist.all_reduce(loss_sum)
        mean = loss_sum.item() / max(1, targets)  # the epoch's token mean
        epoch_losses.append(mean)
        if rank == 0:
            print(f"sft epoch {epoch + 1}/{cfg.epochs}: mean loss {mean:.4f} "
                  f"(step {engine.global_steps}/{total}, {time.time() - started:.1f} s)", flush=True)
    final = last.clone() if last is not None else torch.zeros((), device=device)
    dist.all_reduce(final)
    train_s = time.time() - started
    counts = torch.tensor([tokens, torch.cuda.max_memory_allocated()], dtype=torch.float64, device=device)
    dist.all_reduce(counts[:1])
    dist.all_reduce(counts[1:], op=dist.ReduceOp.MAX)

    Path(spec["weights_dir"]).mkdir(parents=True, exist_ok=True)
    engine.save_16bit_model(spec["weights_dir"], "pytorch_model.bin")
    if rank == 0:
        info = {"examples": len(items), "optimizer_steps": int(engine.global_steps),
                "final_loss": final.item(), "epoch_losses": epoch_losses, "world_size": world,
                "loop_s": round(train_s, 1), "tokens": int(counts[0]), "tokens_per_s": round(float(counts[0]) / train_s),
                PEAK_GPU_KEY: round(float(counts[1]) / 2**30, 2)}
        tmp = Path(spec["result"] + ".tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, spec["result"])
    dist.barrier()
    dist.destroy_process_group()  # a clean exit: no TCPStore errors from ranks that outlive rank 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
