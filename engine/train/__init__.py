"""Training: hf SFT (sft), DeepSpeed SFT (deepspeed_launcher, deepspeed_worker), the tiny base pre-training (pretrain), sharing schedule and textdata."""
