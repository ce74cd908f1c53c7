"""One image-loading path for every source: the same EXIF-rotated file gives the same upright pixels from `local:`,
`hf:`, `disk:` and the built-in world, and an image past the pixel limit is downscaled on load (a JPEG at a
reduced DCT scale), recorded in the sample's meta, with no Pillow warning."""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path

import pytest
from PIL import ExifTags, Image, ImageOps

from vittle_bench import images
from vittle_bench.config import TaskSpec
from vittle_bench.schema import Sample

W, H = 300, 200  # as stored in the file; EXIF orientation 6 shows it 200 wide and 300 high


def rotated_jpeg() -> bytes:
    """A JPEG stored landscape with EXIF orientation 6 ("rotate 90° clockwise to display"); a red block marks
    its stored top-left corner, so a missing or wrong rotation changes the pixels."""
    image = Image.new("RGB", (W, H), (20, 90, 200))
    image.paste((230, 30, 30), (0, 0, 60, 40))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def from_local(root: Path, data: bytes) -> Sample:
    from vittle_bench.data.local import load_local_jsonl

    (root / "photo.jpg").write_bytes(data)
    (root / "own.jsonl").write_text(json.dumps({"question_id": "p", "question": "q", "image": "photo.jpg"}) + "\n")
    return load_local_jsonl("own", root / "own.jsonl")[0]


def _dataset(data: bytes):
    from datasets import Dataset, Features, Value  # type: ignore[import-untyped]
    from datasets import Image as ImageFeature  # type: ignore[import-untyped]

    features = Features({"question_id": Value("string"), "question": Value("string"), "image": ImageFeature()})
    return Dataset.from_dict({"question_id": ["p"], "question": ["q"], "image": [{"bytes": data, "path": None}]},
                             features=features)


COLUMNS = {"sample_id": "question_id", "question": "question", "images": "image"}


def from_hub(root: Path, data: bytes) -> Sample:
    """A hub split's rows, as HubSamples reads them (image cells as encoded bytes)."""
    from vittle_bench.data.hf import HubSamples
    from vittle_bench.data.rows import ColumnMap

    return HubSamples("own", _dataset(data), ColumnMap.from_spec("own", COLUMNS))[0]


def from_disk(root: Path, data: bytes) -> Sample:
    """A `disk:` task over a save_to_disk copy, through the task loader."""
    from vittle_bench.data.sources import load_samples

    _dataset(data).save_to_disk(str(root / "saved"))
    spec = TaskSpec(task="own", source="disk:saved", adapter="pope", path=root / "own.yaml", split="train",
                    columns=COLUMNS)
    return load_samples(spec, root / "cache")[0]


def from_builtin_world(root: Path, data: bytes) -> Sample:
    """The built-in world's loader over a world directory holding the photo."""
    from vittle_bench.builtin.world import load_builtin_subset, world_dir

    world = world_dir(root)
    (world / "images").mkdir(parents=True)
    (world / "images" / "photo.jpg").write_bytes(data)
    (world / "annotations.json").write_text("{}")
    (world / "open.jsonl").write_text(json.dumps({"question_id": "p", "file_name": "photo.jpg", "question": "q",
                                                  "answer": "a"}) + "\n")
    return load_builtin_subset("own", "open", root)[0]


SOURCES = [from_local, from_hub, from_disk, from_builtin_world]
SOURCE_IDS = ["local", "hf", "disk", "builtin"]


@pytest.mark.parametrize("load", SOURCES, ids=SOURCE_IDS)
def test_every_source_applies_exif_orientation_the_same_way(load, tmp_path):
    data = rotated_jpeg()
    with Image.open(io.BytesIO(data)) as stored:
        upright = ImageOps.exif_transpose(stored)  # Pillow's reading of the tag, as `datasets` applies it
    sample = load(tmp_path, data)
    assert sample.load_error is None
    (image,) = sample.images
    assert image.mode == "RGB" and image.size == (H, W)
    assert image.tobytes() == upright.convert("RGB").tobytes()
    assert "downscaled_from" not in sample.meta


@pytest.mark.parametrize("load", SOURCES, ids=SOURCE_IDS)
def test_every_source_downscales_past_the_pixel_limit_and_records_it(load, tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 2_000)  # 60,000 pixels: factor 6, to 34 x 50 (oriented)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sample = load(tmp_path, rotated_jpeg())
    assert sample.load_error is None
    assert sample.images[0].size == (34, 50) and sample.images[0].mode == "RGB"
    assert sample.meta["downscaled_from"] == [[H, W]]


def test_a_jpeg_past_the_limit_is_decoded_at_a_reduced_dct_scale(monkeypatch):
    """Factor 2 is exactly libjpeg's 1/2 scale: the pixels are the reduced decode's, not a box average of the full
    decode, so the full-size image was never in memory."""
    image = Image.effect_noise((640, 480), 60).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 640 * 480 // 2)
    loaded = images.load_image(buffer.getvalue())
    with Image.open(io.BytesIO(buffer.getvalue())) as reduced:
        reduced.draft("RGB", (320, 240))
        reduced.load()
        assert reduced.size == (320, 240)
        assert loaded.size == (320, 240) and loaded.tobytes() == reduced.tobytes()
    with Image.open(io.BytesIO(buffer.getvalue())) as full:
        assert loaded.tobytes() != full.convert("RGB").reduce(2).tobytes()
    assert loaded.info["downscaled_from"] == (640, 480)


def test_other_formats_are_box_averaged_and_multi_image_meta_is_per_image(tmp_path, monkeypatch):
    from vittle_bench.data.local import load_local_jsonl

    Image.effect_noise((90, 60), 50).save(tmp_path / "big.png")
    Image.new("RGB", (20, 10)).save(tmp_path / "small.png")
    (tmp_path / "own.jsonl").write_text(json.dumps({"question_id": 1, "question": "q",
                                                    "image": ["small.png", "big.png"]}) + "\n")
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 1_000)  # 5,400 pixels: factor 3
    sample = load_local_jsonl("own", tmp_path / "own.jsonl")[0]
    small, big = sample.images
    assert small.size == (20, 10) and big.size == (30, 20)
    with Image.open(tmp_path / "big.png") as original:
        assert big.tobytes() == original.convert("RGB").resize((30, 20), Image.Resampling.BOX).tobytes()
    assert sample.meta == {"downscaled_from": [None, [90, 60]]}


def test_pillows_own_bomb_check_neither_warns_nor_refuses(monkeypatch):
    """Pillow warns past Image.MAX_IMAGE_PIXELS and refuses past twice that; load_image's limit replaces both,
    and Pillow's setting is left as it was."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # the 60,000-pixel JPEG is a "bomb" to Pillow
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = images.load_image(rotated_jpeg())
    assert loaded.size == (H, W) and "downscaled_from" not in loaded.info
    assert Image.MAX_IMAGE_PIXELS == 1_000


def test_the_limit_comes_from_the_setting_then_the_environment_then_pillows_default(monkeypatch):
    monkeypatch.delenv(images.MAX_IMAGE_PIXELS_ENV, raising=False)
    assert images.max_image_pixels() == images.DEFAULT_MAX_IMAGE_PIXELS == 89_478_485
    monkeypatch.setenv(images.MAX_IMAGE_PIXELS_ENV, "4000000")
    assert images.max_image_pixels() == 4_000_000
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 5_000)
    assert images.max_image_pixels() == 5_000
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", None)
    for bad in ("lots", "0", "-3", "1e6"):
        monkeypatch.setenv(images.MAX_IMAGE_PIXELS_ENV, bad)
        with pytest.raises(ValueError, match=images.MAX_IMAGE_PIXELS_ENV):
            images.max_image_pixels()


def test_reduction_factor_is_the_smallest_that_fits():
    assert images.reduction_factor((12000, 12000), images.DEFAULT_MAX_IMAGE_PIXELS) == 2
    assert images.reduction_factor((9000, 9000), images.DEFAULT_MAX_IMAGE_PIXELS) == 1
    assert images.reduction_factor((300, 200), 2_000) == 6
    assert images.reduction_factor((300, 200), 1_699) == 7  # sides rounded up: 50 x 34 = 1,700 at factor 6
    assert images.reduction_factor((1, 5_000), 1_000) == 5


def test_a_bad_limit_in_the_environment_stops_a_run_with_one_line(tmp_path, monkeypatch, capsys):
    from vittle_bench.cli import main

    (tmp_path / "own.jsonl").write_text(json.dumps({"question_id": 1, "question": "q", "answer": "yes"}) + "\n")
    (tmp_path / "own.yaml").write_text("task: own\nsource: local:own.jsonl\nadapter: pope\n")
    monkeypatch.setenv(images.MAX_IMAGE_PIXELS_ENV, "twelve million")
    code = main(["run", "--model", "builtin:tiny-llava", "--tasks", "own", "--include-path", str(tmp_path),
                 "--no-cache", "--output", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and images.MAX_IMAGE_PIXELS_ENV in err[0], err


def test_a_run_records_which_images_it_downscaled(tiny_random_checkpoint, tmp_path, monkeypatch):
    """The original size travels into samples.jsonl (`downscaled_from`), never as a warning in the progress bar."""
    from vittle_bench.cli import main

    Image.effect_noise((90, 60), 50).save(tmp_path / "big.png")
    Image.new("RGB", (20, 10)).save(tmp_path / "small.png")
    rows = [{"question_id": 1, "question": "What is it?", "image": "big.png", "answer": "noise"},
            {"question_id": 2, "question": "What is it?", "image": "small.png", "answer": "black"}]
    (tmp_path / "own.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "own.yaml").write_text("task: own\nsource: local:own.jsonl\nadapter: open_ended\n")
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 1_000)
    out = tmp_path / "run"
    assert main(["run", "--model", f"hf:{tiny_random_checkpoint}", "--tasks", "own", "--shifts", "clean",
                 "--include-path", str(tmp_path), "--output", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    records = {r["sample_id"]: r for r in map(json.loads, (out / "samples.jsonl").read_text().splitlines())}
    assert records["1"]["downscaled_from"] == [[90, 60]] and records["2"]["downscaled_from"] is None


def test_a_file_decoded_again_is_served_from_memory_as_a_copy_of_the_same_pixels(tmp_path, monkeypatch):
    images._DECODED.clear()  # other tests decoded the same bytes
    decodes = []
    real = images._decoded
    monkeypatch.setattr(images, "_decoded", lambda source, limit: decodes.append(source) or real(source, limit))
    path = tmp_path / "photo.jpg"
    path.write_bytes(rotated_jpeg())
    first, again = images.load_image(path), images.load_image(str(path))
    assert len(decodes) == 1 and first is not again and first.tobytes() == again.tobytes() and again.size == (H, W)
    first.paste((0, 0, 0), (0, 0, H, W))  # a caller changing what it got changes nobody else's pixels
    assert images.load_image(path).tobytes() == again.tobytes() and len(decodes) == 1
    assert images.load_image(rotated_jpeg()).tobytes() == again.tobytes()  # encoded bytes: by their hash
    images.load_image(rotated_jpeg())
    assert len(decodes) == 2


def test_a_rewritten_file_or_another_limit_is_decoded_afresh(tmp_path, monkeypatch):
    path = tmp_path / "photo.ppm"  # raw pixels: the same size on disk whatever their colour
    Image.new("RGB", (40, 30), (255, 0, 0)).save(path)
    stamp = path.stat().st_mtime_ns
    assert images.load_image(path).getpixel((0, 0)) == (255, 0, 0)
    Image.new("RGB", (40, 30), (0, 0, 255)).save(path)  # rewritten in place: same inode and size
    os.utime(path, ns=(stamp, stamp + 1))  # only the modification time tells the two apart
    assert images.load_image(path).getpixel((0, 0)) == (0, 0, 255)
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 300)
    assert images.load_image(path).size == (20, 15)
    path.unlink()
    with pytest.raises(FileNotFoundError):
        images.load_image(path)
