"""Every checkpoint read goes through one safe reader with one clear message per failure class, naming the file:
not a checkpoint, truncated, unsafe pickle (naming the callable), wrong layout. Each test builds the bad file."""

from __future__ import annotations

import io
import json
import pickle
import random
import zipfile
from pathlib import Path

import pytest
import torch

from multipose.models.checkpoints import (
    CheckpointError,
    CheckpointLayoutError,
    NotACheckpointError,
    TruncatedCheckpointError,
    UnsafeCheckpointError,
    check_training_checkpoint,
    convert_checkpoint,
    load_backbone_init,
    read_checkpoint,
    save_multipose,
)
from multipose.models.loading import load_pose_model, load_weights_into
from multipose.models.model_config import ModelConfig
from multipose.models.registry import build_backbone

TINY = {
    "backbone": {
        "name": "vit_tiny",
        "ffn": "shared",
        "img_size": [64, 48],
        "overrides": {"embed_dim": 32, "depth": 1, "num_heads": 2},
    },
    "head": {"type": "classic", "deconv_filters": [8, 8]},
    "heads": {"coco": {"skeleton": "coco", "num_keypoints": 17}},
}


class _Exec:
    """Pickles as a call of ``builtins.exec`` that would create ``marker`` when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def _jpeg_bytes() -> bytes:
    try:
        from PIL import Image
    except ImportError:  # a JPEG header is all the reader looks at
        return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(200)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="JPEG")
    return buf.getvalue()


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "hello")
        zf.writestr("images/0001.jpg", b"\xff\xd8\xff")
    return buf.getvalue()


def _random_bytes() -> bytes:
    data = random.Random(0).randbytes(4096)
    assert data[:1] != b"\x80"  # the seed gives bytes that cannot be mistaken for a pickle header
    return data


NOT_CHECKPOINTS = {
    "empty": (b"", "empty"),
    "random": (_random_bytes(), "unrecognised binary"),
    "text": (b"epoch 1 loss 0.5\nepoch 2 loss 0.4\n", "text file"),
    "json": (json.dumps({"model": {"lr": 1e-3}}).encode(), "JSON"),
    "zip": (_zip_bytes(), "zip archive"),
    "jpeg": (_jpeg_bytes(), "JPEG"),
    "plain_pickle": (pickle.dumps({"weights": [1.0, 2.0]}), "pickle"),
}


@pytest.mark.parametrize("kind", sorted(NOT_CHECKPOINTS))
def test_not_a_checkpoint(tmp_path, kind):
    data, words = NOT_CHECKPOINTS[kind]
    path = tmp_path / f"model_{kind}.pth"
    path.write_bytes(data)
    with pytest.raises(NotACheckpointError) as info:
        read_checkpoint(path)
    msg = str(info.value)
    assert str(path) in msg and "not a checkpoint" in msg and words in msg
    assert "weights_only=False" not in msg  # never suggest loading unsafely


def _saved(tmp_path: Path, legacy: bool = False) -> Path:
    path = tmp_path / ("legacy.pth" if legacy else "good.pth")
    sd = {"w": torch.arange(4096, dtype=torch.float32), "b": torch.ones(3)}
    torch.save({"state_dict": sd, "meta": {"epoch": 3}}, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("keep", [0.2, 0.5, 0.95])
def test_truncated(tmp_path, legacy, keep):
    good = _saved(tmp_path, legacy)
    assert torch.equal(read_checkpoint(good)["state_dict"]["b"], torch.ones(3))
    data = good.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(TruncatedCheckpointError, match="truncated") as info:
        read_checkpoint(cut)
    assert str(cut) in str(info.value)


def test_truncated_safetensors(tmp_path):
    path = save_multipose(tmp_path / "m.safetensors", TINY, {"w": torch.zeros(1000)})
    assert read_checkpoint(path)["model_config"]["heads"] == TINY["heads"]
    data = path.read_bytes()
    for keep in (6, len(data) // 2, len(data) - 10):
        cut = tmp_path / f"cut{keep}.safetensors"
        cut.write_bytes(data[:keep])
        with pytest.raises(TruncatedCheckpointError, match=str(cut.name)):
            read_checkpoint(cut)


@pytest.mark.parametrize("how", ["torch_zip", "torch_legacy", "plain_pickle"])
def test_unsafe_pickle_is_refused_without_running_it(tmp_path, how):
    marker = tmp_path / "pwned"
    payload = {"state_dict": {"w": torch.zeros(2)}, "evil": _Exec(marker)}
    path = tmp_path / "evil.pth"
    if how == "plain_pickle":
        path.write_bytes(pickle.dumps(payload["evil"]))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=how == "torch_zip")
    with pytest.raises(UnsafeCheckpointError) as info:
        read_checkpoint(path)
    assert "builtins.exec" in str(info.value) and str(path) in str(info.value)
    assert info.value.callables == ["builtins.exec"]
    assert not marker.exists()


def test_wrong_layout(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointLayoutError, match="list"):
        read_checkpoint(path)
    strings = tmp_path / "strings.pt"
    torch.save({"state_dict": {"w": "not a tensor"}}, strings)
    with pytest.raises(CheckpointLayoutError, match="non-tensor"):
        convert_checkpoint(strings)
    other = tmp_path / "other.pt"
    torch.save({"encoder.layer.weight": torch.zeros(2)}, other)
    with pytest.raises(CheckpointLayoutError, match="unknown checkpoint layout"):
        load_pose_model(other)


def test_numpy_meta_is_data_not_code(tmp_path):
    """mmcv stores numpy scalars in ``meta``: allowed (they rebuild data only)."""
    np = pytest.importorskip("numpy")
    path = tmp_path / "mmcv.pth"
    torch.save({"state_dict": {"w": torch.ones(1)}, "meta": {"epoch": np.int64(210), "a": np.zeros(2)}}, path)
    obj = read_checkpoint(path)
    assert int(obj["meta"]["epoch"]) == 210


def test_every_entry_point_names_its_option(tmp_path):
    jpeg = tmp_path / "photo.jpg"
    jpeg.write_bytes(_jpeg_bytes())
    with pytest.raises(NotACheckpointError, match=r"^ckpt_path=.*photo\.jpg: not a checkpoint: a JPEG"):
        check_training_checkpoint(jpeg, "ckpt_path")
    with pytest.raises(NotACheckpointError, match=r"^init_from=.*photo\.jpg"):
        load_weights_into(torch.nn.Linear(1, 1), jpeg)
    with pytest.raises(NotACheckpointError, match=r"^backbone\.init=.*photo\.jpg"):
        load_backbone_init(build_backbone("vit_tiny", depth=1, img_size=(64, 48)), jpeg, verbose=False)
    with pytest.raises(NotACheckpointError, match=r"photo\.jpg"):
        load_pose_model(jpeg)
    from multipose.distillation import load_teacher

    with pytest.raises(NotACheckpointError, match=r"^distill\.teacher_ckpt=.*photo\.jpg"):
        load_teacher(jpeg)
    from multipose.models.knowledge_token import load_knowledge_token

    with pytest.raises(NotACheckpointError, match=r"^distill\.token_path=.*photo\.jpg"):
        load_knowledge_token(jpeg)


def test_convert_cli_reports_each_class_once(tmp_path, capsys):
    from multipose.convert import main as convert_main

    good = _saved(tmp_path).read_bytes()
    evil = tmp_path / "evil.pth"
    torch.save({"x": _Exec(tmp_path / "pwned")}, evil)
    cases = {
        "empty.pth": (b"", "not a checkpoint"),
        "notes.pth": (b"just text\n", "not a checkpoint"),
        "photo.pth": (_jpeg_bytes(), "not a checkpoint"),
        "half.pth": (good[: len(good) // 2], "truncated"),
        "evil.pth": (evil.read_bytes(), "builtins.exec"),
    }
    for name, (data, words) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert convert_main([str(tmp_path / name), str(tmp_path / "out.pt")]) == 2
        err = capsys.readouterr().err
        assert err.count("error:") == 1 and name in err and words in err, err
        assert "(see below)" not in err and "Traceback" not in err and "weights_only=False" not in err
    assert not (tmp_path / "out.pt").exists() and not (tmp_path / "pwned").exists()


def test_training_checkpoint_precheck_wants_a_lightning_file(tmp_path):
    converted = save_multipose(tmp_path / "converted.pt", TINY, {"w": torch.zeros(1)})
    with pytest.raises(CheckpointLayoutError, match=r"ckpt_path=.*converted\.pt: a converted multipose file"):
        check_training_checkpoint(converted, "ckpt_path")
    ok = tmp_path / "run.ckpt"
    torch.save(
        {
            "state_dict": {"model.w": torch.zeros(1)},
            "hyper_parameters": {"model_config": TINY},
            "global_step": 3,
        },
        ok,
    )
    assert check_training_checkpoint(ok)["heads"] == TINY["heads"]
    no_cfg = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"model.w": torch.zeros(1)}, "hyper_parameters": {"lr": 1e-3}}, no_cfg)
    with pytest.raises(CheckpointLayoutError, match="model_config"):
        check_training_checkpoint(no_cfg)


def test_save_multipose_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    save_multipose(path, TINY, {"w": torch.zeros(1)})
    before = path.read_bytes()

    def broken_save(obj, f, *a, **k):
        Path(f).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_multipose(path, TINY, {"w": torch.ones(1)})
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_checkpoint_error_is_a_value_error():
    assert issubclass(NotACheckpointError, CheckpointError) and issubclass(CheckpointError, ValueError)
    assert ModelConfig.from_dict(TINY).to_dict()["heads"] == TINY["heads"]


@pytest.mark.parametrize("entry", ["train", "eval"])
def test_train_and_eval_check_ckpt_path_before_anything_runs(tmp_path, entry):
    from omegaconf import open_dict

    from conftest import compose

    bad = tmp_path / "last.ckpt"
    bad.write_bytes(_zip_bytes())
    cfg = compose(
        entry,
        [
            *(["+experiment=smoke"] if entry == "train" else []),
            f"ckpt_path={bad}",
            f"paths.root_dir={tmp_path}",
            f"data.root={tmp_path / 'world'}",
        ],
    )
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.print_config = False
    if entry == "train":
        from multipose.train import train as run
    else:
        from multipose.eval import evaluate as run
    with pytest.raises(
        NotACheckpointError, match=r"^ckpt_path=.*last\.ckpt: not a checkpoint: a zip archive"
    ):
        run(cfg)
    assert not (tmp_path / "world").exists()  # failed before any data was built
