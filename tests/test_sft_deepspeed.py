"""The `deepspeed` SFT backend: its DeepSpeed config, data split, launch command, the conversion of
save_16bit_model's pytorch_model.bin into a safetensors folder, and config validation. These run on
the CPU without DeepSpeed; the last test runs the real backend and needs 2 GPUs and DeepSpeed."""
from __future__ import annotations

import importlib.util
import sys

import pytest

from engine.config import SFTConfig, resolve
from engine.errors import ConfigError, UserError

from conftest import TINY_PRESET


def test_ds_config_follows_sft_config():
    from engine.train.deepspeed_launcher import ds_config

    cfg = SFTConfig(lr=3e-4, batch_size=8, grad_accum=4, weight_decay=0.01)
    c = ds_config(cfg, world_size=2)
    assert c["train_micro_batch_size_per_gpu"] == 8
    assert c["gradient_accumulation_steps"] == 4
    assert c["train_batch_size"] == 8 * 4 * 2
    assert c["gradient_clipping"] == 1.0
    assert c["bf16"] == {"enabled": True}
    assert c["zero_optimization"]["stage"] == 3
    assert c["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    two = ds_config(SFTConfig(zero_stage=2), world_size=1)["zero_optimization"]
    assert two["stage"] == 2 and "stage3_gather_16bit_weights_on_model_save" not in two
    assert c["optimizer"]["type"] == "AdamW"
    p = c["optimizer"]["params"]
    assert (p["lr"], p["weight_decay"], p["betas"], p["eps"]) == (3e-4, 0.01, [0.9, 0.999], 1e-8)
    assert "scheduler" not in c  # the worker passes a LambdaLR over engine.train.schedule.lr_factor
    assert "fp16" not in c


def test_launch_command_and_environment():
    from engine.train.deepspeed_launcher import child_env, launch_command

    cmd = launch_command("/j/job.json", 0, None, 29600)
    assert cmd[:4] == [sys.executable, "-u", "-m", "deepspeed.launcher.runner"]
    assert "--num_gpus" not in cmd and "--include" not in cmd
    assert cmd[-4:] == ["--module", "engine.train.deepspeed_worker", "--job", "/j/job.json"]
    assert "--num_gpus" in launch_command("j", 2, None, 1)
    # with CUDA_VISIBLE_DEVICES set the runner ignores it under --num_gpus: name the ids instead
    cmd = launch_command("j", 2, "3,5,6", 1)
    assert "--num_gpus" not in cmd and cmd[cmd.index("--include") + 1] == "localhost:3,5"
    env = child_env({"TORCH_CUDA_ARCH_LIST": "9.0a;8.0 10.0a+PTX", "PATH": "/bin"})
    assert env["TORCH_CUDA_ARCH_LIST"] == "9.0;8.0 10.0+PTX"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert importlib.util.find_spec("engine").submodule_search_locations[0].rsplit("/", 1)[0] in env["PYTHONPATH"]


def test_pytorch_model_bin_becomes_a_safetensors_folder_with_identical_weights(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from engine.train.deepspeed_launcher import convert_checkpoint
    from engine.models.tiny import new_tiny_model

    init = tmp_path / "init"
    new_tiny_model(init, seed=0)
    trained, _ = new_tiny_model(None, seed=1)  # other weights, as if trained
    trained = trained.to(torch.bfloat16)
    state = {"model." + k: v for k, v in trained.state_dict().items() if k != "lm_head.weight"}  # as ZeRO-3 saves a tied model
    (tmp_path / "w").mkdir()
    torch.save(state, tmp_path / "w" / "pytorch_model.bin")

    out = tmp_path / "sft_1"
    convert_checkpoint(init, tmp_path / "w" / "pytorch_model.bin", out, save_dtype=torch.bfloat16)
    names = sorted(p.name for p in out.iterdir())
    assert "model.safetensors" in names and "config.json" in names and "tokenizer.json" in names
    assert "generation_config.json" in names
    assert not any(n.endswith(".bin") for n in names)
    assert not list(tmp_path.glob(".sft_1.tmp-*"))

    loaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16)
    got, want = loaded.state_dict(), trained.state_dict()
    assert set(got) == set(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    assert loaded.config.tie_word_embeddings


def test_conversion_rejects_tensors_of_another_model(tmp_path):
    import torch

    from engine.train.deepspeed_launcher import convert_checkpoint
    from engine.models.tiny import new_tiny_model

    new_tiny_model(tmp_path / "init")
    torch.save({"model.model.embed_tokens.weight": torch.zeros(3, 3), "model.bogus.weight": torch.zeros(1)}, tmp_path / "w.bin")
    with pytest.raises((UserError, RuntimeError)):
        convert_checkpoint(tmp_path / "init", tmp_path / "w.bin", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_config_accepts_deepspeed_and_checks_num_gpus():
    cfg = resolve(TINY_PRESET, ["sft.backend=deepspeed", "sft.num_gpus=2"])
    assert (cfg.sft.backend, cfg.sft.num_gpus) == ("deepspeed", 2)
    assert resolve(TINY_PRESET, []).sft.num_gpus == 0
    with pytest.raises(ConfigError) as exc:
        resolve(TINY_PRESET, ["sft.num_gpus=-1"])
    assert "sft.num_gpus" in str(exc.value) and ">= 0" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        resolve(TINY_PRESET, ["sft.backend=megatron"])
    assert "deepspeed" in str(exc.value)


def _gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:
        return 0


@pytest.mark.skipif(_gpus() < 2 or importlib.util.find_spec("deepspeed") is None,
                    reason="needs 2 CUDA GPUs and DeepSpeed")
def test_deepspeed_backend_trains_the_tiny_model_on_two_gpus(tmp_path):
    import random

    import torch
    from transformers import AutoModelForCausalLM

    from engine.train.deepspeed_launcher import train
    from engine.models.tiny import new_tiny_model

    new_tiny_model(tmp_path / "init", seed=0)
    rng = random.Random(0)
    pairs = []
    for _ in range(512):
        a, b = rng.randint(0, 49), rng.randint(0, 49)
        pairs.append((f"{a}+{b}=", f"{a + b}"))
    cfg = SFTConfig(backend="deepspeed", num_gpus=2, epochs=4, lr=2e-3, batch_size=16, grad_accum=2,
                    warmup=0.1, schedule="cosine", max_length=32)
    lines = []
    info = train(tmp_path / "init", pairs, cfg, tmp_path / "sft_1", "cuda", torch.bfloat16, 0, lines.append)
    print("\n".join(lines[-15:]))
    print(info)
    assert info["world_size"] == 2
    assert info["optimizer_steps"] == 4 * 8  # 256 items a rank / 16 = 16 micro-batches / 2 = 8 steps an epoch
    assert info["epoch_losses"][-1] < 0.8 * info["epoch_losses"][0]
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "sft_1")
    assert (tmp_path / "sft_1" / "model.safetensors").exists()
    assert not any(p.name.startswith(".sft_1") for p in tmp_path.iterdir())
    init = AutoModelForCausalLM.from_pretrained(tmp_path / "init")
    assert not torch.equal(model.model.embed_tokens.weight, init.model.embed_tokens.weight.to(model.dtype))


def _fake_launch(monkeypatch, script: str):
    """Stand in for DeepSpeed's launcher: a Python child that runs `script` with the job path."""
    import engine.train.deepspeed_launcher as sd

    monkeypatch.setattr(sd, "_check_can_run", lambda n, multi_node: None)
    monkeypatch.setattr(sd, "launch_command", lambda job, n, visible, port, hosts: [sys.executable, "-c", script, str(job)])


def test_train_streams_the_child_output_and_converts_its_weights(tmp_path, monkeypatch):
    import torch

    from engine.train.deepspeed_launcher import train
    from engine.models.tiny import new_tiny_model

    model, _ = new_tiny_model(tmp_path / "init", seed=3)
    torch.save({"model." + k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}, tmp_path / "trained.bin")
    _fake_launch(monkeypatch, f"""
import json, shutil, sys, pathlib
spec = json.loads(pathlib.Path(sys.argv[1]).read_text())
pairs = [json.loads(l) for l in open(spec["pairs"])]
print("worker saw", len(pairs), "pairs, first", pairs[0]["prompt"], pairs[0]["response"])
pathlib.Path(spec["weights_dir"]).mkdir()
shutil.copy({str(tmp_path / "trained.bin")!r}, pathlib.Path(spec["weights_dir"]) / "pytorch_model.bin")
pathlib.Path(spec["result"]).write_text(json.dumps(dict(examples=len(pairs), optimizer_steps=5, final_loss=0.5,
    epoch_losses=[1.0, 0.5], world_size=2)))
""")
    lines = []
    cfg = SFTConfig(backend="deepspeed")
    info = train(tmp_path / "init", [("1+2=", "3"), ("2+2=", "4")], cfg, tmp_path / "sft_1", "cuda",
                 torch.bfloat16, 0, lines.append)
    assert "[deepspeed] worker saw 2 pairs, first 1+2= 3" in lines
    assert (info["backend"], info["optimizer_steps"], info["world_size"]) == ("deepspeed", 5, 2)
    assert (tmp_path / "sft_1" / "model.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["init", "sft_1", "trained.bin"]  # job folder gone


def test_a_failing_launcher_is_a_user_error_with_the_tail_of_its_output(tmp_path, monkeypatch):
    from engine.train.deepspeed_launcher import train

    _fake_launch(monkeypatch, "import sys\nfor i in range(100): print('line', i)\nsys.exit(3)")
    with pytest.raises(UserError) as exc:
        train(tmp_path / "init", [("a", "b")], SFTConfig(backend="deepspeed"), tmp_path / "sft_1", "cuda",
              None, 0, lambda _: None)
    msg = str(exc.value)
    assert "exit code 3" in msg and "line 99" in msg and "line 10\n" not in msg
    assert not (tmp_path / "sft_1").exists() and list(tmp_path.iterdir()) == []


def test_sft_hosts_are_checked_and_need_deepspeed():
    cfg = resolve(TINY_PRESET, ["sft.backend=deepspeed", 'sft.hosts=["node-1 slots=8", "10.0.0.2  slots=4"]'])
    assert cfg.sft.hosts == ["node-1 slots=8", "10.0.0.2  slots=4"]
    for bad, why in [('["node-1"]', "HOST slots=N"), ('["node-1 slots=0"]', "N >= 1"), ('["a slots=2", "a slots=2"]', "each host once"),
                     ('["a b slots=2"]', "HOST slots=N")]:
        with pytest.raises(ConfigError) as exc:
            resolve(TINY_PRESET, ["sft.backend=deepspeed", f"sft.hosts={bad}"])
        assert "sft.hosts[" in str(exc.value) and why in str(exc.value), (bad, str(exc.value))
    with pytest.raises(ConfigError) as exc:
        resolve(TINY_PRESET, ['sft.hosts=["a slots=2"]'])
    assert "sft.hosts" in str(exc.value) and "deepspeed" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        resolve(TINY_PRESET, ["sft.backend=deepspeed", "sft.compile=true"])
    assert "sft.compile" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        resolve(TINY_PRESET, ["sft.grad_checkpointing=1"])
    assert "sft.grad_checkpointing" in str(exc.value) and "true or false" in str(exc.value)


def test_multi_node_dry_run_shows_the_launch_and_the_hostfile_and_writes_nothing(tmp_path):
    """The command and hostfile a two-machine run would use, from `imm run --dry-run` (no launch)."""
    from conftest import imm

    sets = ["sft.backend=deepspeed", 'sft.hosts=["gpu-a slots=8", "gpu-b slots=8"]', "sft.global_batch_size=128",
            "sft.batch_size=4"]
    out = imm("run", str(TINY_PRESET), "--dry-run", *sum((["--set", s] for s in sets), []), home=tmp_path / "home",
              check=True).stdout
    assert "per-device 4 x grad-accum 2 x 16 GPU(s) (sft.hosts: 2 machine(s)) = global batch 128" in out
    launch = next(line.strip() for line in out.splitlines() if line.strip().startswith("launch: "))
    assert launch == ("launch: python -u -m deepspeed.launcher.runner --master_port PORT --hostfile JOB/hostfile "
                      "--master_addr gpu-a --module engine.train.deepspeed_worker --job JOB/job.json; "
                      "JOB/hostfile: gpu-a slots=8; gpu-b slots=8")
    assert not (tmp_path / "home").exists()


def test_the_job_folder_holds_the_hostfile_the_launch_names(tmp_path):
    from engine.models.ds_runner import host_gpus
    from engine.train.deepspeed_launcher import launch_command, write_job

    cfg = SFTConfig(backend="deepspeed", num_gpus=4, hosts=["gpu-a slots=8", "gpu-b   slots=2"])
    job = write_job(tmp_path, tmp_path / "init", [("1+1=", "2")], cfg, seed=0)
    assert (tmp_path / "hostfile").read_text() == "gpu-a slots=8\ngpu-b slots=2\n"
    cmd = launch_command(job, cfg.num_gpus, "0,1", 29500, cfg.hosts)
    assert cmd[cmd.index("--hostfile") + 1] == str(tmp_path / "hostfile")
    assert cmd[cmd.index("--master_addr") + 1] == "gpu-a"
    assert cmd[cmd.index("--num_gpus") + 1] == "4" and "--include" not in cmd  # 4 a host: CUDA_VISIBLE_DEVICES is local
    assert host_gpus(cfg.hosts, 4) == 6 and host_gpus(cfg.hosts, 0) == 10
    assert "--hostfile" not in launch_command(job, 0, None, 1)  # one machine: no hostfile
