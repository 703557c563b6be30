"""Bad input that must never slip through: corrupt / missing images (pre-flight check, cache, skip policy)
and every option that a message in multipose.data names."""

from __future__ import annotations

import ast
import inspect
import json
import logging
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

import multipose.data
from multipose.data import image_check
from multipose.data.config import DataConfigError
from multipose.data.datamodule import MultiPoseDataModule
from multipose.data.dataset import ImageReadError
from multipose.data.image_check import check_image_files, image_problem

W, H = 64, 48


def good_jpeg(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), (W, H))
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


def bad_files(folder: Path) -> dict[str, Path]:
    """The four classic broken images: truncated JPEG, zero bytes, text named .jpg, missing file."""
    folder.mkdir(parents=True, exist_ok=True)
    data = good_jpeg(folder / "src.jpg").read_bytes()
    out = {
        "truncated": folder / "truncated.jpg",
        "empty": folder / "empty.jpg",
        "text": folder / "text.jpg",
        "missing": folder / "missing.jpg",
    }
    out["truncated"].write_bytes(data[: len(data) // 2])
    out["empty"].write_bytes(b"")
    out["text"].write_text("404 Not Found\n<html>...</html>\n")
    (folder / "src.jpg").unlink()
    return out


def test_header_check_finds_each_kind_of_bad_file(tmp_path):
    bad = bad_files(tmp_path)
    ok_jpg = good_jpeg(tmp_path / "ok.jpg")
    ok_png = tmp_path / "ok.png"
    cv2.imwrite(str(ok_png), np.zeros((4, 4, 3), np.uint8))
    assert image_problem(ok_jpg) is None and image_problem(ok_png) is None
    assert image_problem(bad["truncated"]).startswith("truncated JPEG")
    assert image_problem(bad["empty"]) == "empty file (0 bytes)"
    assert image_problem(bad["text"]).startswith("not an image file")
    assert image_problem(bad["missing"]) == "file not found"
    png = ok_png.read_bytes()
    (tmp_path / "cut.png").write_bytes(png[:-12])
    assert image_problem(tmp_path / "cut.png") == "truncated PNG (no IEND chunk)"


def test_decode_mode_finds_what_the_header_cannot(tmp_path):
    # a JPEG with intact markers but garbage in between: the header check passes, decoding does not
    rng = np.random.default_rng(1)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8\xff\xe0" + rng.integers(0, 255, 600, dtype=np.uint8).tobytes() + b"\xff\xd9")
    assert image_problem(junk, "header") is None
    assert image_problem(junk, "decode").startswith("could not be decoded")


def test_check_is_cached_by_size_and_mtime(tmp_path, monkeypatch):
    files = [good_jpeg(tmp_path / f"{i}.jpg", seed=i) for i in range(3)]
    bad = bad_files(tmp_path / "bad")
    paths = [str(p) for p in files] + [str(p) for p in bad.values()]
    cache = tmp_path / "cache"
    calls: list[str] = []
    real = image_check.image_problem
    monkeypatch.setattr(image_check, "image_problem", lambda p, mode: calls.append(str(p)) or real(p, mode))

    first = check_image_files(paths, "header", cache)
    assert set(first) == {str(p) for p in bad.values()}
    assert len(calls) == 6  # every existing file once; the missing one needs no read
    (cache_file,) = cache.iterdir()  # one file, no temporary left behind
    assert json.loads(cache_file.read_text())["mode"] == "header"

    calls.clear()
    assert check_image_files(paths, "header", cache) == first
    assert calls == []  # all from the cache

    files[1].write_bytes(files[1].read_bytes()[:100])  # size and mtime change: checked again, found bad
    calls.clear()
    again = check_image_files(paths, "header", cache)
    assert calls == [str(files[1])] and again[str(files[1])].startswith("truncated JPEG")
    # another mode or another file list is another cache entry
    calls.clear()
    check_image_files(paths[:2], "header", cache)
    assert len(calls) == 2 and len(list(cache.iterdir())) == 2
    assert check_image_files(paths, "off", cache) == {}


def test_unwritable_cache_is_a_warning_not_a_failure(tmp_path, caplog):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    with caplog.at_level(logging.WARNING, logger="multipose.data.image_check"):
        assert check_image_files([str(good_jpeg(tmp_path / "a.jpg"))], "header", blocker / "cache") == {}
    assert "not written" in caplog.text


# ------------------------------------------------------------------------------------------------ DataModule


def make_split(root: Path, split: str, broken: dict[str, str]) -> None:
    """A COCO split of 6 images with one person each; ``broken`` maps image index -> kind of damage."""
    img_dir = root / "images" / split
    images, anns = [], []
    for i in range(6):
        name = f"{i}.jpg"
        good_jpeg(img_dir / name, seed=i)
        kind = broken.get(str(i))
        if kind == "truncated":
            data = (img_dir / name).read_bytes()
            (img_dir / name).write_bytes(data[: len(data) // 2])
        elif kind == "empty":
            (img_dir / name).write_bytes(b"")
        elif kind == "text":
            (img_dir / name).write_text("not a picture")
        elif kind == "missing":
            (img_dir / name).unlink()
        images.append({"id": i + 1, "file_name": name, "width": W, "height": H})
        kp = [v for j in range(17) for v in (10 + j, 10 + j * 0.5, 2)]
        anns.append(
            {
                "id": 10 + i,
                "image_id": i + 1,
                "category_id": 1,
                "bbox": [5, 5, 40, 30],
                "area": 1200,
                "iscrowd": 0,
                "num_keypoints": 17,
                "keypoints": kp,
            }
        )
    (root / f"{split}.json").write_text(json.dumps({"images": images, "annotations": anns}))


def dm_for(root: Path, **kw) -> MultiPoseDataModule:
    entry = {
        "format": "coco",
        "skeleton": "coco",
        "batch_count": 2,
        "train": {"ann_file": "train.json", "img_dir": "images/train"},
        "val": {"ann_file": "val.json", "img_dir": "images/val"},
    }
    return MultiPoseDataModule(
        {"c": entry}, root=str(root), input_size=(64, 48), heatmap_size=(16, 12), batch_size=2, **kw
    )


@pytest.fixture
def damaged(tmp_path) -> Path:
    make_split(tmp_path, "train", {"1": "truncated", "2": "empty", "3": "text", "4": "missing"})
    make_split(tmp_path, "val", {"5": "truncated"})
    return tmp_path


def test_default_is_an_error_at_start_up_naming_files_and_options(damaged):
    dm = dm_for(damaged)
    assert (dm.check_images, dm.on_bad_image) == ("header", "error")
    with pytest.raises(ImageReadError) as exc:
        dm.setup("fit")
    msg = str(exc.value)
    assert "4 of 6 image files are missing or corrupt" in msg
    for name, why in (
        ("1.jpg", "truncated JPEG"),
        ("2.jpg", "empty file"),
        ("3.jpg", "not an image"),
        ("4.jpg", "file not found"),
    ):
        assert re.search(rf"{name}: {why}", msg), name
    assert "data.on_bad_image=skip" in msg


def test_skip_leaves_bad_images_out_and_lists_them(damaged, caplog):
    dm = dm_for(damaged, on_bad_image="skip")
    with caplog.at_level(logging.WARNING, logger="multipose.data.datamodule"):
        dm.setup("fit")
    assert [i.ann_id for i in dm.train_datasets[0].instances] == [10, 15]
    # validation: neither a sample nor a ground truth (a truncated image cannot be predicted on)
    assert [i.ann_id for i in dm.val_datasets[0].instances] == [10, 11, 12, 13, 14]
    assert 6 not in dm.val_images("c") and 15 not in {i.ann_id for i in dm.val_instances("c")}
    summary = dm.skipped_images_summary()
    assert summary["count"] == 5
    assert {(f["split"], Path(f["path"]).name) for f in summary["files"]} == {
        ("train", "1.jpg"),
        ("train", "2.jpg"),
        ("train", "3.jpg"),
        ("train", "4.jpg"),
        ("val", "5.jpg"),
    }
    metrics = dm.skipped_images_metrics()
    assert metrics["data/skipped_images"] == 5.0 and len(metrics["data/skipped_image_files"]) == 5
    assert "c val: " in metrics["data/skipped_image_files"][-1] and json.dumps(metrics)
    assert dm_for(damaged, on_bad_image="skip").skipped_images_metrics() == {}  # nothing read yet
    assert "leaving out 4 of 6 images" in caplog.text and "3.jpg: not an image file" in caplog.text
    # the check was cached under the data root
    assert list((damaged / ".multipose_cache").glob("images_header_*.json"))


def test_off_defers_to_load_time(damaged):
    dm = dm_for(damaged, check_images="off")
    dm.setup("fit")  # nothing is read yet
    ds = dm.train_datasets[0]
    with pytest.raises(ImageReadError, match=r"1\.jpg \(annotation id 11\): truncated JPEG"):
        ds[1]


# ------------------------------------------------------------------------------------------------ options


def _message_strings() -> list[tuple[str, str]]:
    """(file, text) of every string literal in multipose.data outside docstrings (f-string parts joined)."""
    out = []
    root = Path(multipose.data.__file__).parent
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        in_fstrings = {
            id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
                out.append((path.name, text))
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and id(node) not in in_fstrings
            ):
                out.append((path.name, node.value))
    return out


CONFIG_REF = re.compile(r"(?<![\w.])data\.([a-z_]+)")
BARE_KWARG = re.compile(r"\b(?:pass|set|use)\s+([a-z_]{2,})\s*=")  # 'set v=0' is a value, not an option
#: keyword arguments a message may suggest that are function / CLI options, not config keys
API_OPTIONS = {
    "overwrite": ("multipose.data.synthetic", "generate_world"),
    "conf_dir": ("multipose.data.browse", "build_datamodule_from_overrides"),
}


ENTRY_REF = re.compile(r"\{\}\.([a-z_]+)")  # f"datasets.{name}.codec", f"{where}.det_file" in config.py


def option_problems(messages: list[tuple[str, str]]) -> list[str]:
    from dataclasses import fields

    from multipose.data.config import DatasetEntry, SplitConfig

    keys = set(inspect.signature(MultiPoseDataModule.__init__).parameters) - {"self"}
    entry_keys = {f.name for f in fields(DatasetEntry)} | {f.name for f in fields(SplitConfig)}
    problems = []
    for file, text in messages:
        problems += [f"{file}: data.{k} in {text!r}" for k in CONFIG_REF.findall(text) if k not in keys]
        if file == "config.py":
            problems += [f"{file}: .{k} in {text!r}" for k in ENTRY_REF.findall(text) if k not in entry_keys]
        for k in BARE_KWARG.findall(text):
            if k not in API_OPTIONS:
                problems.append(f"{file}: '{k}=' in {text!r} is not a config key (write data.{k}=...)")
    return problems


def test_every_option_a_message_names_exists():
    messages = _message_strings()
    assert len(messages) > 100  # the scan sees the code
    assert option_problems(messages) == []
    # the scan catches the messages this replaced
    assert option_problems([("x.py", "fix img_dir or pass check_images=False")])
    assert option_problems([("x.py", "set data.check_image=off")])
    assert option_problems([("config.py", "datasets.{}.det_thr must be a number")])
    for key, (module, func) in API_OPTIONS.items():
        mod = __import__(module, fromlist=[func])
        assert key in inspect.signature(getattr(mod, func)).parameters


@pytest.mark.parametrize("key", ["check_images", "on_bad_image", "invalid_boxes", "mode"])
def test_policy_options_are_validated(tmp_path, key):
    make_split(tmp_path, "train", {})
    make_split(tmp_path, "val", {})
    with pytest.raises(DataConfigError, match=rf"data\.{key} = 'bogus' is unknown; valid \w+: "):
        dm_for(tmp_path, **{key: "bogus"})


def test_policy_keys_are_in_every_shipped_data_config(conf_dir):
    import yaml

    for path in sorted((conf_dir / "data").glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        assert {"check_images", "on_bad_image", "invalid_boxes"} <= set(cfg), path.name
        assert cfg["on_bad_image"] == "error", path.name  # never a silent drop by default
