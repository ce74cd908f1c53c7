"""Same input, same preparation: every loader prepares images once (RGB), so the clean condition and an identity
image shift hand the model the same pixels, and a measured drop is the shift's and nothing else's."""

from __future__ import annotations

import argparse
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vittle_bench.schema import Sample
from vittle_bench.shifts import ImageShift, parse_condition
from vittle_bench.shifts._imaging import to_rgb
from vittle_bench.shifts.base import ShiftCondition
from vittle_bench.shifts.engine import ShiftEngine
from vittle_bench.shifts.image_cache import ShiftedImageCache

W, H = 48, 32


def gradient16() -> np.ndarray:
    """A 16-bit ramp over the format's full range (0 ... 65535), row by row."""
    return np.linspace(0, 65535, W * H).round().astype(np.uint16).reshape(H, W)


def colours() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (H, W, 4), dtype=np.uint8)


def rgba() -> Image.Image:
    """RGBA whose alpha runs from 0 to 255, so compositing and dropping alpha give different pixels."""
    array = colours()
    array[..., 3] = np.linspace(0, 255, W, dtype=np.uint8)[None, :]
    return Image.fromarray(array, "RGBA")


def palette_with_transparency() -> Image.Image:
    image = Image.fromarray(colours()[..., :3], "RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    image.info["transparency"] = 3
    return image


# file name -> the image written there
INPUTS = {
    "sixteen.png": lambda: Image.fromarray(gradient16()),  # a 16-bit PNG (I;16, or I under older Pillow)
    "sixteen.tif": lambda: Image.fromarray(gradient16()),  # I;16
    "rgba.png": rgba,
    "la.png": lambda: rgba().convert("LA"),
    "palette.png": palette_with_transparency,
    "grey.png": lambda: Image.fromarray(colours()[..., 0], "L"),
    "cmyk.tif": lambda: Image.fromarray(colours(), "RGBA").convert("CMYK"),
}
SIXTEEN_BIT = ("sixteen.png", "sixteen.tif")
READ_BACK = {"sixteen.png": ("I;16", "I"), "sixteen.tif": ("I;16",), "rgba.png": ("RGBA",), "la.png": ("LA",),
             "palette.png": ("P",), "grey.png": ("L",), "cmyk.tif": ("CMYK",)}  # the modes the loaders decode


def write_inputs(root: Path) -> dict[str, bytes]:
    root.mkdir(parents=True, exist_ok=True)
    for name, make in INPUTS.items():
        image = make()
        if name == "palette.png":
            image.save(root / name, transparency=3)
        else:
            image.save(root / name)
        with Image.open(root / name) as back:
            assert back.mode in READ_BACK[name] and (name != "palette.png" or "transparency" in back.info), name
    return {name: (root / name).read_bytes() for name in INPUTS}


@dataclass(frozen=True)
class Identity(ImageShift):
    """An image shift that changes nothing beyond what every built-in image shift does to its input first."""

    severity: int
    name: str = "identity"
    version: str = "1"

    def apply_image(self, image: Image.Image, seed: int) -> Image.Image:
        return to_rgb(image)


def local_samples(tmp_path: Path) -> list[Sample]:
    from vittle_bench.data.local import load_local_jsonl

    root = tmp_path / "local"
    write_inputs(root)
    rows = [{"question_id": name, "question": "What is shown?", "image": name} for name in INPUTS]
    (root / "own.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return list(load_local_jsonl("own", root / "own.jsonl"))


def hub_samples(tmp_path: Path) -> list[Sample]:
    """Rows of a hub / disk dataset: image cells kept as encoded bytes, decoded by the loader."""
    from datasets import Dataset, Features, Value  # type: ignore[import-untyped]
    from datasets import Image as ImageFeature  # type: ignore[import-untyped]

    from vittle_bench.data.hf import HubSamples
    from vittle_bench.data.rows import ColumnMap

    encoded = write_inputs(tmp_path / "hub")
    features = Features({"question_id": Value("string"), "question": Value("string"), "image": ImageFeature()})
    dataset = Dataset.from_dict({"question_id": list(encoded), "question": ["What is shown?"] * len(encoded),
                                 "image": [{"bytes": b, "path": None} for b in encoded.values()]}, features=features)
    cmap = ColumnMap.from_spec("own", {"sample_id": "question_id", "question": "question", "images": "image"})
    return list(HubSamples("own", dataset, cmap))


@pytest.mark.parametrize("loader", [local_samples, hub_samples], ids=["local", "hub"])
def test_clean_pixels_equal_an_identity_image_shift(loader, tmp_path):
    samples = loader(tmp_path)
    assert [s.load_error for s in samples] == [None] * len(INPUTS)
    identity = ShiftCondition("identity@1", Identity(1))
    with ShiftEngine(ShiftedImageCache(tmp_path / "shifted")) as engine:  # the runner's engine, with its cache
        clean = engine.apply_many(parse_condition("clean"), samples, seed=0)
        shifted = engine.apply_many(identity, samples, seed=0)
        again = engine.apply_many(identity, samples, seed=0)  # served from the shifted-image cache
    for sample, c, s, a in zip(samples, clean, shifted, again):
        assert isinstance(c, Sample) and isinstance(s, Sample) and isinstance(a, Sample), sample.sample_id
        (ci,), (si,), (ai,) = c.images, s.images, a.images
        assert ci.mode == "RGB" and ci.size == (W, H), (sample.sample_id, ci.mode)
        assert (ci.mode, ci.size, ci.tobytes()) == (si.mode, si.size, si.tobytes()), sample.sample_id
        assert ai.tobytes() == ci.tobytes() and c.content_hash() == s.content_hash(), sample.sample_id
    by_id = {s.sample_id: c for s, c in zip(samples, clean)}
    for name in SIXTEEN_BIT:
        pixels = np.asarray(by_id[name].images[0])
        assert pixels.min() == 0 and pixels.max() == 255 and len(np.unique(pixels)) == 256, name  # not all white
        assert np.array_equal(pixels[..., 0], np.rint(gradient16() / 257).astype(np.uint8)), name


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "CMYK", "1", "YCbCr", "RGBX"])
def test_eight_bit_modes_follow_convert_rgb(mode):
    """The papers' pipelines (LLaVA's `Image.open(f).convert('RGB')`, lmms-eval's `image.convert('RGB')`)."""
    from vittle_bench.images import prepare_image

    image = palette_with_transparency() if mode == "P" else rgba().convert(mode)
    assert image.mode == mode
    prepared = prepare_image(image)
    assert prepared.mode == "RGB" and prepared.tobytes() == image.convert("RGB").tobytes()


def test_high_bit_modes_are_rescaled_by_the_full_range():
    from vittle_bench.images import prepare_image

    ramp = gradient16()
    expected = np.rint(ramp / 257).astype(np.uint8)
    big_endian = Image.frombytes("I;16B", (W, H), ramp.astype(">u2").tobytes())
    for image in (Image.fromarray(ramp), Image.fromarray(ramp).convert("I"), big_endian):  # I: older Pillow's PNG
        out = np.asarray(prepare_image(image))
        assert out.shape == (H, W, 3) and np.array_equal(out[..., 0], expected), image.mode
        assert np.array_equal(out[..., 0], out[..., 2])
    wide = Image.fromarray(np.array([[0, 70_000, 2**31 - 1], [-5, 2**30, 2**16]], dtype=np.int32))  # 32-bit data
    assert np.asarray(prepare_image(wide))[..., 0].tolist() == [[0, 0, 255], [0, 128, 0]]
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0], [-1.0, 2.0, np.nan]], dtype=np.float32))  # float: [0, 1]
    assert np.asarray(prepare_image(unit))[..., 0].tolist() == [[0, 128, 255], [0, 255, 0]]


def test_rgb_is_returned_untouched_and_bad_images_raise_value_error():
    from vittle_bench.images import prepare_image

    rgb = Image.new("RGB", (3, 2), (1, 2, 3))
    assert prepare_image(rgb) is rgb
    with pytest.raises(ValueError, match="empty image"):
        prepare_image(Image.new("RGB", (0, 4)))
    with pytest.raises(ValueError, match="'La'"):
        prepare_image(Image.new("La", (2, 2)))


def test_shift_called_directly_prepares_like_a_loader():
    """A shift handed an unprepared image (a plugin or library caller) sees the pixels a loader would deliver."""
    from vittle_bench.images import prepare_image
    from vittle_bench.shifts import sample_rng

    image = rgba()
    for label in ("rotate@1", "gaussian_noise@2"):
        condition = parse_condition(label)
        direct = condition.shift.apply(Sample("t", "1", "q", images=(image,)), sample_rng(0, label, "1"))
        loaded = condition.shift.apply(Sample("t", "1", "q", images=(prepare_image(image),)), sample_rng(0, label, "1"))
        assert direct.images[0].tobytes() == loaded.images[0].tobytes(), label


def test_preview_image_is_prepared_and_unreadable_is_a_config_error(tmp_path):
    from vittle_bench.commands.shifts import _load_sample
    from vittle_bench.config import ConfigError

    write_inputs(tmp_path)
    sample = _load_sample(argparse.Namespace(image=tmp_path / "sixteen.png", question="q"))
    assert sample.images[0].mode == "RGB" and np.asarray(sample.images[0]).min() == 0
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ConfigError, match="broken.png"):
        _load_sample(argparse.Namespace(image=tmp_path / "broken.png", question="q"))


PLUGIN_SOURCE = textwrap.dedent('''
    """An identity image shift: what every image shift does to its input first, and nothing else."""
    from dataclasses import dataclass

    from vittle_bench.shifts import ImageShift
    from vittle_bench.shifts._imaging import to_rgb


    @dataclass(frozen=True)
    class Identity(ImageShift):
        severity: int
        name: str = "identity"
        version: str = "1"

        def apply_image(self, image, seed):
            return to_rgb(image)
''')


def test_local_task_clean_answers_equal_an_identity_shift(tmp_path, monkeypatch, tiny_random_checkpoint):
    """Acceptance: a 16-bit PNG and an RGBA PNG in a `local:` task; clean and identity give the same answers."""
    from vittle_bench.cli import main
    from vittle_bench.shifts import SHIFTS

    site = tmp_path / "site"
    site.mkdir()
    (site / "vb_identity_shift.py").write_text(PLUGIN_SOURCE)
    info = site / "vb_identity_shift-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vb-identity-shift\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[vittle_bench.shifts]\nidentity = vb_identity_shift:Identity\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(SHIFTS, "_entries", dict(SHIFTS._entries))  # restored after the test
    monkeypatch.setattr(SHIFTS, "_plugins_loaded", False)  # rescan entry points, as a fresh process would

    root = tmp_path / "task"
    root.mkdir()
    Image.fromarray(gradient16()).save(root / "sixteen.png")
    rgba().save(root / "rgba.png")
    rows = [{"question_id": name, "question": "Is there a red circle in the image?", "image": name, "answer": "yes"}
            for name in ("sixteen.png", "rgba.png")]
    (root / "own.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "own.yaml").write_text("task: own\nsource: local:own.jsonl\nadapter: pope\n")
    out = tmp_path / "run"
    code = main(["run", "--model", f"hf:{tiny_random_checkpoint}", "--tasks", "own", "--include-path", str(root),
                 "--shifts", "identity@1", "--no-cache", "--output", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    by = {(r["shift"], r["sample_id"]): r for r in records}
    assert len(records) == 4 and all(r["error"] is None for r in records)
    for name in ("sixteen.png", "rgba.png"):
        clean, identity = by["clean", name], by["identity", name]
        assert clean["input_hash"] == identity["input_hash"], name
        assert clean["raw_output"] == identity["raw_output"], name
        assert clean["cache_key"] != identity["cache_key"], name  # keyed before shifting: the key names the shift

