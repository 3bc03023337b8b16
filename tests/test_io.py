import numpy as np
import pytest
import torch

from memorization_curvature import io


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "scores.npz"
    io.save_npz(target, a=np.arange(3))
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_bytes(b"half a fi")
            raise RuntimeError("killed")
    assert np.array_equal(io.load_npz(target)["a"], np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["scores.npz"]


def test_npz_keeps_its_name_and_content(tmp_path):
    io.save_npz(tmp_path / "x.npz", a=np.ones(2), b=np.asarray(4))
    arrays = io.load_npz(tmp_path / "x.npz")
    assert set(arrays) == {"a", "b"} and int(arrays["b"]) == 4


class Payload:
    pass


def test_checkpoints_holding_arbitrary_objects_are_refused(tmp_path):
    torch.save({"state_dict": {}, "extra": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        io.load_torch(tmp_path / "evil.pt")
    io.save_torch(tmp_path / "ok.pt", {"w": torch.ones(2), "epoch": 3})
    assert io.load_torch(tmp_path / "ok.pt")["epoch"] == 3


def test_truncated_checkpoint_names_the_file(tmp_path):
    from memorization_curvature import checkpoints, models

    kwargs = {"in_channels": 1, "num_classes": 10, "image_size": 8}
    model = models.build_model("small_cnn", **kwargs)
    path = tmp_path / "epoch3.pt"
    io.save_torch(path, checkpoints.checkpoint("small_cnn", kwargs, model, 3))
    rebuilt, epoch = checkpoints.load_model(path)
    assert epoch == 3
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), model.state_dict().values()))
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(RuntimeError, match="epoch3.pt"):
        checkpoints.load_model(path)


def test_npz_members_are_memory_mapped_where_stored_plainly(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (50, 3, 7, 5), dtype=np.uint8)
    io.save_npz(tmp_path / "a.npz", images=images, names=np.array(["x", "yy"]))
    arrays = io.load_npz(tmp_path / "a.npz", mmap=("images", "absent"))
    assert isinstance(arrays["images"], np.memmap) and np.array_equal(arrays["images"], images)
    assert arrays["names"].tolist() == ["x", "yy"] and "absent" not in arrays
    # a compressed file (not one of ours) is read instead
    np.savez_compressed(tmp_path / "b.npz", images=images)
    arrays = io.load_npz(tmp_path / "b.npz", mmap=("images",))
    assert not isinstance(arrays["images"], np.memmap) and np.array_equal(arrays["images"], images)
