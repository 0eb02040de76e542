"""The method's words as types: a checkpoint label reads back as the checkpoint it names, and the
enums compare equal to the text stored in configs and the database."""
import pytest

from engine.domain import Checkpoint, CheckpointKind, Domain, Method, TrialStatus
from engine.results_table import checkpoint_label, checkpoint_order


@pytest.mark.parametrize("label, kind, iteration, title", [
    ("base", CheckpointKind.BASE, 0, "Base"), ("sft1", CheckpointKind.SFT, 1, "SFT1"),
    ("merge12", CheckpointKind.MERGE, 12, "Merge12"),
])
def test_checkpoint_label_parses_back_to_the_same_checkpoint(label, kind, iteration, title):
    ckpt = Checkpoint.parse(label)
    assert (ckpt.kind, ckpt.iteration, str(ckpt), ckpt.title) == (kind, iteration, label, title)


@pytest.mark.parametrize("label", ["sft", "sft0", "merge01", "Base", "sft1 ", "trial", "sft-1", "xsft1"])
def test_checkpoint_parse_refuses_what_no_run_writes(label):
    with pytest.raises(ValueError, match="not a checkpoint label"):
        Checkpoint.parse(label)


def test_checkpoints_sort_in_the_order_of_the_loop_and_other_names_with_base():
    labels = ["merge2", "sft10", "base", "sft2", "merge1", "sft1"]
    assert sorted(labels, key=checkpoint_order) == ["base", "sft1", "merge1", "sft2", "merge2", "sft10"]
    assert checkpoint_order("trial") == checkpoint_order("base")
    assert [checkpoint_label(x) for x in ("base", "sft2", "merge2", "trial")] == ["Base", "SFT2", "Merge2", "Trial"]


def test_enums_equal_the_stored_text():
    assert Method("imm") == "imm" and f"{Method.VANILLA}" == "vanilla"
    assert [d.value for d in Domain] == ["id", "ood"]
    assert TrialStatus("queued") is TrialStatus.QUEUED
