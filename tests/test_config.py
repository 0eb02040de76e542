"""Presets + overrides -> RunConfig; every rejection names the field, the value and what is allowed,
exits 2 and writes nothing."""

import pytest

from imm_tui.cli import main
from engine.config import RunConfig, load_preset, resolve
from engine.errors import ConfigError

from conftest import PROJECT, TINY_PRESET, gguf_stand_ins


def test_tiny_preset_resolves_with_overrides():
    cfg = resolve(TINY_PRESET, ["merge.alpha=0.3", "tasks.ood=arith_add4", "generation.temperatures=0.2,0.5",
                                "eval.k=[1]", "sft.lr=5e-4", "seed=7", "merge.drop_rate=0"])
    assert isinstance(cfg, RunConfig)
    assert (cfg.name, cfg.merge.alpha, cfg.tasks.ood, cfg.generation.temperatures) == ("tiny-arith", 0.3, ["arith_add4"], [0.2, 0.5])
    assert (cfg.sft.lr, cfg.seed, cfg.merge.drop_rate) == (5e-4, 7, 0.0)
    assert cfg.all_tasks() == ["arith_add3", "arith_add4"]


def test_local_model_path_is_made_absolute(tmp_path, monkeypatch):
    (tmp_path / "m").mkdir()
    monkeypatch.chdir(tmp_path)
    cfg = resolve(TINY_PRESET, ["model.path=./m"])
    assert cfg.model.path == str(tmp_path / "m")


@pytest.mark.parametrize(
    "override, field, allowed",
    [
        ("bogus=1", "bogus", "known keys"),
        ("merge.bogus=1", "merge.bogus", "known keys"),
        ("merge.alpha=1.5", "merge.alpha", "[0, 1]"),
        ("merge.alpha=-0.1", "merge.alpha", "[0, 1]"),
        ("merge.alpha=high", "merge.alpha", "a number"),
        ("merge.drop_rate=1", "merge.drop_rate", "[0, 1)"),
        ("generation.k=0", "generation.k", ">= 1"),
        ("eval.k=[0]", "eval.k[0]", ">= 1"),
        ("eval.k=[2]", "eval.k[0]", "eval.samples"),
        ("iterations=0", "iterations", ">= 1"),
        ("iterations=1.5", "iterations", "an integer"),
        ("generation.temperatures=[0.2,-0.4]", "generation.temperatures[1]", ">= 0"),
        ("model.path=./no/such/model", "model.path", "existing local model folder"),
        ("tasks.id=no_such_task", "tasks.id", "arith_add3"),
        ("tasks.ood=[\"arith_add4\",\"nope\"]", "tasks.ood[1]", "arith_add3"),
        ("method=magic", "method", "imm, vanilla, mixture, accumulate"),
        ("sft.epochs=true", "sft.epochs", "an integer"),
    ],
)
def test_bad_input_exits_2_names_field_and_writes_nothing(tmp_path, capsys, override, field, allowed):
    home = tmp_path / "home"
    code = main(["run", str(TINY_PRESET), "--set", override, "--home", str(home)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: {field}: got ")
    assert allowed in err
    assert not home.exists()


def test_every_bad_field_is_named_at_once_a_line_each(tmp_path, capsys):
    code = main(["run", str(TINY_PRESET), "--set", "merge.alpha=2", "--set", "iterations=0", "--set", "tasks.id=nope",
                 "--home", str(tmp_path / "home")])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2 and [line.split(":")[1] for line in lines] == [" iterations", " merge.alpha", " tasks.id"]
    assert all(line.startswith("error: ") and "; allowed: " in line for line in lines)
    assert not (tmp_path / "home").exists()


def test_missing_and_malformed_presets(tmp_path, capsys):
    assert main(["run", str(tmp_path / "none.toml"), "--home", str(tmp_path / "h")]) == 2
    assert "preset" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("iterations = = 2\n")
    assert main(["run", str(bad), "--home", str(tmp_path / "h")]) == 2
    assert "valid TOML" in capsys.readouterr().err
    assert not (tmp_path / "h").exists()


def test_every_shipped_preset_validates(tmp_path, monkeypatch):
    presets = sorted((PROJECT / "presets").glob("*.toml"))
    assert TINY_PRESET in presets
    monkeypatch.chdir(tmp_path)  # a GGUF preset's model path is relative to where imm runs
    gguf_presets = [p for p in presets if load_preset(p).get("model", {}).get("path", "").endswith(".gguf")]
    assert gguf_presets
    for preset in gguf_presets:  # validates once the user has the file there
        with pytest.raises(ConfigError, match="model.path"):
            resolve(preset)
    assert gguf_stand_ins(tmp_path)
    for preset in presets:
        resolve(preset)


@pytest.mark.parametrize("name", ["café", "a" * 65, "a b", "-x", ""])
def test_a_preset_name_imm_run_refuses_is_refused_when_saving(tmp_path, name):
    """One name rule: save_preset refuses exactly the names `imm run` refuses as a run's name."""
    from engine import api
    from engine.errors import UserError

    with pytest.raises(ConfigError, match="^name: got"):
        resolve(TINY_PRESET, [f"name={name!r}".replace("'", '"')])
    with pytest.raises(UserError, match="preset name: got .*1-64 ASCII letters"):
        api.save_preset(name, TINY_PRESET, folder=tmp_path / "presets")
    assert not (tmp_path / "presets").exists()
    assert api.save_preset("a" * 64, TINY_PRESET, folder=tmp_path / "presets").stem == "a" * 64
