"""ShardWriter and CheckpointReader.location: the file-level pieces the streaming merge stands on."""
import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.merge.checkpoint import CheckpointReader, ShardWriter


def test_shard_written_in_pieces_reads_back_like_save_file(tmp_path):
    tensors = {"a.weight": torch.randn(3, 5).bfloat16(), "b.bias": torch.randn(7), "c": torch.randn(2, 2, 2).half()}
    entries = [(name, {torch.bfloat16: "BF16", torch.float32: "F32", torch.float16: "F16"}[t.dtype], tuple(t.shape))
               for name, t in tensors.items()]
    with ShardWriter(tmp_path / "w.safetensors", entries) as writer:
        for t in tensors.values():
            raw = t.contiguous().view(torch.uint8).flatten().numpy()
            writer.write(raw[:5])  # in two pieces, as the merge writes a tensor piece by piece
            writer.write(raw[5:])
    back = load_file(tmp_path / "w.safetensors")
    assert back.keys() == tensors.keys()
    assert all(torch.equal(back[n], t) for n, t in tensors.items())
    with open(tmp_path / "w.safetensors", "rb") as f:
        assert (8 + int.from_bytes(f.read(8), "little")) % 8 == 0  # data section aligned


def test_shard_writer_refuses_short_or_long_writes_and_existing_files(tmp_path):
    entries = [("x", "F32", (4,))]
    with pytest.raises(ValueError, match="wrote 8 of 16 planned bytes"):
        with ShardWriter(tmp_path / "short.safetensors", entries) as writer:
            writer.write(bytes(8))
    with pytest.raises(ValueError, match="more bytes written than planned"):
        with ShardWriter(tmp_path / "long.safetensors", entries) as writer:
            writer.write(bytes(20))
    with pytest.raises(FileExistsError):
        ShardWriter(tmp_path / "short.safetensors", entries)


def test_location_points_at_the_tensor_bytes(tmp_path):
    tensors = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.arange(4, dtype=torch.int64)}
    save_file(tensors, tmp_path / "model.safetensors")
    reader = CheckpointReader(tmp_path)
    for name, t in tensors.items():
        loc = reader.location(name)
        assert (loc.shape, loc.nbytes) == (tuple(t.shape), t.numel() * t.element_size())
        with open(loc.path, "rb") as f:
            f.seek(loc.offset)
            raw = bytearray(f.read(loc.nbytes))
        assert torch.equal(torch.frombuffer(raw, dtype=t.dtype).reshape(t.shape), t)
