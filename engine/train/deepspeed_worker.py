"""One rank of the `deepspeed` SFT backend; started by DeepSpeed's launcher (engine.train.deepspeed_launcher).

Reads the job spec written by the engine, trains with ZeRO-3 bf16, saves the gathered 16-bit
weights with save_16bit_model (rank 0 writes pytorch_model.bin) and, on rank 0, a result JSON.
See engine/train/deepspeed_launcher.py for how the data is split over the ranks.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--job", required=True)
    parser.add_argument("--local_rank", type=int, default=int(os.environ.get("LOCAL_RANK", 0)))
    args = parser.parse_args(argv)

    import deepspeed
    import torch
    import torch.distributed as dist

    from engine.config import SFTConfig
    from engine.models.loading import load_tokenizer
    from engine.runstate.names import PEAK_GPU_KEY
    from engine.train.deepspeed_launcher import ds_config, rank_order
    from engine.train.schedule import epoch_seed, lr_scheduler, optimizer_steps, warmup_steps
    from engine.train.textdata import batches, encode_pairs

    spec = json.loads(Path(args.job).read_text())
    cfg = SFTConfig(**spec["sft"])
    seed = spec["seed"]
    init_path = spec["init_path"]
    trust_remote_code = spec.get("trust_remote_code", False)

    torch.cuda.set_device(args.local_rank)
    deepspeed.init_distributed()
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(seed)

    pairs = []
    with open(spec["pairs"], encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                pairs.append((r["prompt"], r["response"]))
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
    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=model.parameters(), config=config,
        lr_scheduler=lambda opt: lr_scheduler(opt, total, warmup, cfg.schedule),
    )
    engine.train()
    device = torch.device("cuda", args.local_rank)
    if rank == 0:
        print(f"sft worker: {world} rank(s), {len(items)} examples, {total} optimizer steps "
              f"(micro batch {cfg.batch_size}, grad accum {cfg.grad_accum}, warm-up {warmup})", flush=True)

    started = time.time()
    epoch_losses, last, tokens = [], None, 0
    for epoch in range(cfg.epochs):
        order = rank_order(len(items), rank, world, epoch_seed(seed, epoch))
        mine = [items[i] for i in order]
        micro_per_epoch = math.ceil(len(mine) / cfg.batch_size)
        loss_sum = torch.zeros((), device=device)
        for i, (ids, mask, labels) in enumerate(batches(mine, cfg.batch_size, tokenizer.pad_token_id)):
            # the optimizer steps every grad_accum micro-batches and at the end of each epoch (as hf)
            engine.set_gradient_accumulation_boundary((i + 1) % cfg.grad_accum == 0 or i + 1 == micro_per_epoch)
            loss = engine(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss
            engine.backward(loss)
            engine.step()
            loss_sum += loss.detach().float()
            tokens += int(mask.sum())
            last = loss.detach().float()
        dist.all_reduce(loss_sum)
        mean = loss_sum.item() / (micro_per_epoch * world)
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
                "final_loss": final.item() / world, "epoch_losses": epoch_losses, "world_size": world,
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
