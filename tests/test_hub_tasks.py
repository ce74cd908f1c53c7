"""Every hub task config, offline: the real loader reads tiny fixtures with the hubs' exact schemas from a
data directory, the Samples go through a tiny real model and the task's adapter, and the cells score. Also:
mirror layouts and aliases, lmms-eval's prompts, bad rows, missing data / columns as one-paragraph errors
(exit 2), `vittle-bench data pope` and `vittle-bench list tasks`."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import shutil
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict, load_from_disk
from PIL import Image

from vittle_bench.adapters import TASK_ADAPTERS
from vittle_bench.cli import main
from vittle_bench.config import ConfigError, TaskSpec, load_task_specs, resolve_tasks
from vittle_bench.data.hf import HubSamples, open_dataset
from vittle_bench.data.sources import load_samples, task_size
from vittle_bench.models import load_model
from vittle_bench.schema import SampleResult

from fake_openai_server import FakeServer, ok
from fixtures_hub import (
    EMI_NATURAL_SPLITS,
    EMI_SYNTHETIC_SPLITS,
    POPE_FEATURES,
    build_hub_fixtures,
    fixture_rows,
    photo,
)

SPECS = load_task_specs()
HUB = [s for s in SPECS.values() if s.source.startswith("hf:")]
PAPER_TASKS = {"llava_bench_coco", "llava_bench_in_the_wild", "llava_bench_wilder", "wildvision_bench",
               "scienceqa_img", "mmmu_val", "mme", "mmstar", "pope_random", "pope_popular", "pope_adversarial"}


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory) -> Path:
    return build_hub_fixtures(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


_FIXTURE_ROWS = fixture_rows()


def _fixture_split(spec: TaskSpec, rows=_FIXTURE_ROWS) -> dict[str, list]:
    return rows[(spec.source.removeprefix("hf:"), spec.subset)][spec.split]


def test_the_issue_datasets_all_have_configs():
    assert PAPER_TASKS <= set(SPECS)
    long_tail = {"llava_bench_in_the_wild", "llava_bench_wilder", "wildvision_bench"}
    assert {t.task for t in resolve_tasks("paper45")} == PAPER_TASKS - long_tail
    assert {t.task for t in resolve_tasks("long_tail")} == long_tail
    assert sorted(s.split for s in HUB if s.source.endswith("synthetic-v1")) == sorted(EMI_SYNTHETIC_SPLITS)
    assert sorted(s.split for s in HUB if s.source.endswith("natural-v1")) == sorted(EMI_NATURAL_SPLITS)
    assert len(EMI_SYNTHETIC_SPLITS) == 35 and len(EMI_NATURAL_SPLITS) == 28
    assert {t.task for t in resolve_tasks("emi_synthetic,emi_natural")} == {
        s.task for s in HUB if s.source.startswith("hf:changdae/")}


@pytest.fixture
def one_thread():
    """Two shared cores: torch's second thread makes a tiny model ~100x slower under load here."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def judge_server():
    """An OpenAI-compatible judge on localhost that prefers the evaluated model (WildVision verdict B>A)."""
    with FakeServer(default=lambda payload: ok("Mine is better. My final verdict: [[B>A]]")) as server:
        yield server


def test_every_hub_config_loads_runs_through_a_model_and_scores(hub_dir, cache, tiny_random_checkpoint, one_thread,
                                                                 judge_server):
    model = load_model(f"hf:{tiny_random_checkpoint}")
    pairwise_judge = {"judge": "openai:judge", "judge_args": {"base_url": judge_server.url}}
    cells = []
    for spec in HUB:
        samples = load_samples(spec, cache, None, hub_dir)
        rows = _fixture_split(spec)
        assert len(samples) == len(next(iter(rows.values()))), spec.task
        judged = pairwise_judge if spec.adapter == "pairwise" else {}
        adapter = TASK_ADAPTERS.get(spec.adapter)(**{**spec.adapter_args, "max_new_tokens": 3, **judged})
        for sample in samples:
            assert sample.load_error is None, (spec.task, sample.load_error)
            assert sample.images and all(im.mode == "RGB" for im in sample.images) and sample.question
            assert sample.answer, spec.task
        cells.append((spec, adapter, list(samples)))
    requests = [a.build_request(s) for _, a, samples in cells for s in samples]
    outputs = [out for i in range(0, len(requests), 48) for out in model.generate(requests[i:i + 48])]
    assert len(outputs) == len(requests) and all(isinstance(o, str) for o in outputs)
    outputs_iter = iter(outputs)
    for spec, adapter, samples in cells:
        records = []
        for sample in samples:
            raw = next(outputs_iter)
            parsed = adapter.parse(raw, sample)
            score, ref = adapter.score(sample, parsed, raw)
            records.append(SampleResult(model=model.name, task=spec.task, shift="clean", shift_kind="clean", severity=0,
                                        sample_id=sample.sample_id, input_hash=sample.content_hash(), prompt="",
                                        answer=sample.answer, raw_output=raw, parsed=parsed.value, parse_ok=parsed.ok,
                                        score=score, category=sample.category, reference_score=ref))
        metrics = {m: v for m, v, *_ in adapter.aggregate(records, seed=0)}
        primary = {"pope": ["accuracy", "f1", "yes_ratio"], "closed_form": ["accuracy", "unparseable_rate"],
                   "mme": ["mme_perception", "mme_cognition", "accuracy", "accuracy_plus"],
                   "open_ended": ["relative_score_overlap"], "pairwise": ["win_rate", "mean_verdict"]}[spec.adapter]
        for name in primary:
            assert math.isfinite(metrics[name]), (spec.task, name, metrics)
    assert next(outputs_iter, None) is None
    assert len(judge_server.log) == len(_fixture_split(SPECS["wildvision_bench_pairwise"])["question_id"])


def test_samples_and_prompts_match_the_rows_and_lmms_eval(hub_dir, cache):
    def load(task):
        spec = SPECS[task]
        judge = {"judge": "openai:judge"} if spec.adapter == "pairwise" else {}  # builds prompts only, never judges
        adapter = TASK_ADAPTERS.get(spec.adapter)(**spec.adapter_args, **judge)
        prepared = [adapter.prepare(s) for s in load_samples(spec, cache, None, hub_dir)]  # as the runner does
        return [(s, adapter.build_request(s)) for s in prepared]

    sqa = load("scienceqa_img")
    assert sqa[0][1].prompt == ("Context: Cats have sharp claws.\nWhich animal's feet are also adapted for grabbing "
                                "prey?\nA. duck\nB. cat\nC. owl\nAnswer with the option's letter from the given "
                                "choices directly.")
    assert sqa[0][0].answer == "B" and sqa[1][0].context is None and sqa[1][1].prompt.startswith("Which material")
    star = load("mmstar")
    raw = fixture_rows()[("Lin-Chen/MMStar", "val")]["val"]["question"][0]
    assert star[0][1].prompt == raw + "\nAnswer with the option's letter from the given choices directly"
    assert star[0][0].question == "Which option describes the object in the image correctly?"
    assert star[0][0].choices[1] == "a cup of coffee" and star[0][0].category == "coarse perception"
    mmmu = load("mmmu_val")
    assert mmmu[1][1].prompt == ("Which circuit in <image 1> matches the graph?\nA. <image 2>\nB. neither\n\n"
                                 "Answer with the option's letter from the given choices directly.")
    assert len(mmmu[1][0].images) == 2 and mmmu[0][0].category == "Art_Theory"
    assert mmmu[2][1].prompt == ("<image 1> What is the value of x?\n\n"
                                 "Answer the question using a single word or phrase.")
    mme = load("mme")
    assert mme[0][1].prompt == "Is there a cat in this image?\nAnswer the question using a single word or phrase."
    assert [s.answer for s, _ in mme] == ["yes", "no", "yes", "no"]
    assert len({s.sample_id for s, _ in mme}) == 4
    pope = load("pope_adversarial")
    assert pope[0][1].prompt == "Is there a cat in the image?\nAnswer the question using a single word or phrase."
    assert pope[0][0].category == "adversarial" and pope[0][0].meta["image_source"].startswith("COCO_val2014_")
    coco = load("llava_bench_coco")
    assert coco[0][1].prompt == "What is the man doing?"
    # the judge's context is LLaVA's for the image: its five captions, then every object's box
    assert coco[0][0].context.startswith("Two antique suitcases sit stacked one on top of the other.\n")
    assert "\n\nsuitcase: [0.167, 0.025, 0.989, 0.445]\n" in coco[0][0].context
    assert [s.category for s, _ in coco] == ["conv", "detail", "complex"]
    wild = load("wildvision_bench")
    assert wild[0][0].answer == "The meme shows an astronaut."
    # the grayscale photo arrives as RGB, pixel-identical to the fixture's image
    wilder = load("llava_bench_wilder")
    assert wilder[1][0].images[0].tobytes() == photo(4).convert("RGB").tobytes()


def test_mirror_layouts_and_alias_ids(hub_dir, cache):
    assert open_dataset(SPECS["mme"], cache, hub_dir)[1].endswith("lmms-lab-encoder/MME")
    # A fixture under the config folder the task names is what serves it: the repo-folder fallback also finds
    # parquet files below it (MMStar's), and serving from there would hide a task config naming a wrong config.
    assert open_dataset(SPECS["mmstar"], cache, hub_dir)[1] == str(hub_dir / "Lin-Chen" / "MMStar" / "val")
    for spec in HUB:
        if spec.subset:
            assert open_dataset(spec, cache, hub_dir)[1].endswith(f"/{spec.subset}"), spec.task
    assert open_dataset(SPECS["mmmu_val"], cache, hub_dir)[1].endswith("lmms-lab/MMMU")
    assert open_dataset(SPECS["pope_random"], cache, hub_dir)[1].endswith("lmms-lab/POPE/Full")
    encoder_id = dataclasses.replace(SPECS["pope_random"], source="hf:lmms-lab-encoder/POPE")
    assert len(load_samples(encoder_id, cache, None, hub_dir)) == 4


def test_samples_are_lazy_sliceable_and_limited(hub_dir, cache):
    samples = load_samples(SPECS["pope_popular"], cache, None, hub_dir)
    assert isinstance(samples, HubSamples) and samples._dataset.cache_files  # rows stay in memory-mapped Arrow
    head = samples[1:3]
    assert isinstance(head, HubSamples) and len(head) == 2
    assert [s.sample_id for s in head] == ["2", "3"] and samples[-1].sample_id == "4"
    assert [s.sample_id for s in load_samples(SPECS["pope_popular"], cache, 2, hub_dir)] == ["1", "2"]
    with pytest.raises(IndexError):
        samples[4]


def test_limit_streams_only_the_first_rows_of_a_hub_split(hub_dir, cache, tmp_path, monkeypatch):
    """`--limit N` on a hub source streams the first N rows (never the whole split) and keeps them in the cache
    directory; the Samples equal the first N of a full download. The hub is played by the fixture's real
    Arrow data served as a stream, through the same datasets.load_dataset call."""
    import datasets

    spec = SPECS["pope_random"]
    full, _ = open_dataset(spec, cache, hub_dir)
    calls = []

    def fake_hub(repo, config=None, split=None, revision=None, streaming=False):
        calls.append((repo, config, split, streaming))
        if not streaming:
            raise AssertionError("the whole split was requested")
        return full.to_iterable_dataset()

    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    limited = load_samples(spec, tmp_path, 3, None)
    assert calls == [("lmms-lab/POPE", "Full", "random", True)]
    expected = HubSamples(spec.task, full, limited.cmap)[:3]
    assert len(limited) == 3
    for got, want in zip(limited, expected):
        assert (got.sample_id, got.question, got.answer) == (want.sample_id, want.question, want.answer)
        assert got.images[0].tobytes() == want.images[0].tobytes()
    assert load_samples(spec, tmp_path, 3, None)[2].sample_id == expected[2].sample_id
    assert len(calls) == 1  # the second run reads the cached rows


def test_a_bad_row_becomes_a_per_sample_error(tmp_path, cache):
    rows = fixture_rows()[("lmms-lab/POPE", "Full")]["random"]
    buf = io.BytesIO()
    photo(1).save(buf, format="JPEG")
    truncated = {"bytes": buf.getvalue()[:200], "path": None}
    rows = {**rows, "image": [truncated] + rows["image"][1:]}
    DatasetDict({"random": Dataset.from_dict(rows, features=POPE_FEATURES)}).save_to_disk(str(tmp_path / "pope"))
    spec = dataclasses.replace(SPECS["pope_random"], source="disk:pope", subset=None, path=tmp_path / "task.yaml")
    samples = list(load_samples(spec, cache))
    assert samples[0].load_error and samples[0].images == () and samples[0].sample_id == "1"
    assert all(s.load_error is None for s in samples[1:])


def test_a_missing_column_is_one_actionable_paragraph(tmp_path, hub_dir, cache):
    dd = load_from_disk(str(hub_dir / "lmms-lab/POPE/Full"))
    DatasetDict({k: v.remove_columns(["answer"]) for k, v in dd.items()}).save_to_disk(
        str(tmp_path / "lmms-lab/POPE/Full"))
    with pytest.raises(ConfigError) as err:
        load_samples(SPECS["pope_random"], cache, None, tmp_path)
    message = str(err.value)
    assert "\n" not in message and "lmms-lab/POPE" in message and "'answer'" in message
    assert "columns:" in message and "--data-dir" in message and "save_to_disk" in message


def test_a_missing_dataset_offline_exits_2_with_one_paragraph(tmp_path, capsys, tiny_random_checkpoint):
    code = main(["run", "--model", f"hf:{tiny_random_checkpoint}", "--tasks", "mmstar", "--shifts", "clean",
                 "--output", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert "Lin-Chen/MMStar" in err and "--data-dir" in err and "save_to_disk" in err and "OfflineModeIsEnabled" in err
    with pytest.raises(ConfigError, match="looked in .*Lin-Chen/MMStar/val"):
        load_samples(SPECS["mmstar"], tmp_path, None, tmp_path / "empty")


def _tiny_coco(root: Path) -> tuple[Path, Path]:
    names = ["person", "dog", "cat", "car", "chair"]
    present = [[0, 1], [0, 2], [1, 3], [0, 4], [2, 3], [1, 4]]
    images, anns = [], []
    (root / "imgs").mkdir()
    for i, cats in enumerate(present):
        file_name = f"COCO_val2014_{i:012d}.jpg"
        photo(i, (24, 16)).convert("RGB").save(root / "imgs" / file_name)
        images.append({"id": i, "file_name": file_name, "width": 24, "height": 16})
        anns += [{"id": len(anns), "image_id": i, "category_id": c + 1, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0}
                 for c in cats]
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    coco = {"images": images, "annotations": anns, "categories": categories}
    (root / "instances.json").write_text(json.dumps(coco))
    return root / "instances.json", root / "imgs"


def test_data_pope_writes_the_hub_schema_and_runs_as_the_pope_tasks(tmp_path, cache, capsys):
    from vittle_bench.data.coco_pope import build_pope

    annotations, images = _tiny_coco(tmp_path)
    out = tmp_path / "mirror" / "lmms-lab" / "POPE" / "Full"
    code = main(["data", "pope", "--annotations", str(annotations), "--images", str(images), "--output", str(out),
                 "--num-images", "4", "--k", "2", "--seed", "1"])
    assert code == 0 and "adversarial: 16 questions" in capsys.readouterr().out
    saved = load_from_disk(str(out))
    assert sorted(saved) == ["adversarial", "popular", "random"]
    assert all(split.features == POPE_FEATURES for split in saved.values())
    expected = build_pope(annotations, "popular", num_images=4, k=2, seed=1)
    popular = saved["popular"]
    assert popular["question"] == [q.question for q in expected] and popular["answer"] == [q.answer for q in expected]
    assert popular["question_id"][:2] == ["1", "2"] and set(popular["category"]) == {"popular"}
    first = Image.open(images / expected[0].file_name).convert("RGB")
    assert popular[0]["image"].convert("RGB").tobytes() == first.tobytes()
    samples = list(load_samples(SPECS["pope_popular"], cache, None, tmp_path / "mirror"))
    assert [s.answer for s in samples] == [q.answer for q in expected] and samples[0].images
    assert main(["data", "pope", "--annotations", str(annotations), "--images", str(images), "--output",
                 str(out)]) == 2  # never overwrites a non-empty directory


def test_list_tasks_shows_size_adapter_and_metric(capsys):
    assert main(["list", "tasks"]) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert lines["mme"][1:4] == ["2374", "mme", "accuracy"]
    assert lines["pope_adversarial"][1:4] == ["3000", "pope", "accuracy"]
    assert lines["llava_bench_coco"][3] == "relative_score_overlap"  # the task's default judge is a stand-in
    assert lines["mmstar"][1:4] == ["1500", "closed_form", "accuracy"]
    assert lines["emi_nat_wild_normal_korean"][1] == "60"
    assert lines["shapes_mc"][1:3] == ["200", "closed_form"]


@pytest.mark.slow
def test_builtin_sizes_are_the_real_counts(world_cache):
    for spec in SPECS.values():
        if spec.source == "builtin:shapes":
            assert task_size(spec) == str(len(load_samples(spec, world_cache))), spec.task


def test_unknown_columns_keys_and_row_formats_fail_before_loading(tmp_path, cache):
    bad = dataclasses.replace(SPECS["mme"], columns={**SPECS["mme"].columns, "answr": "answer"})
    with pytest.raises(ConfigError, match="unknown `columns:` keys"):
        load_samples(bad, cache, None, tmp_path)
    from vittle_bench.registry import UnknownNameError

    with pytest.raises(UnknownNameError, match="mmstar"):
        load_samples(dataclasses.replace(SPECS["mme"], columns={**SPECS["mme"].columns, "row": "mmstr"}), cache, None,
                     tmp_path)
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.slow
def test_hub_tasks_run_through_the_runner_under_shifts(hub_dir, tmp_path, tiny_random_checkpoint, one_thread):
    """The lazy samples work with the runner (slicing, batching, shifts on multi-image samples), read from
    the offline copies through `--data-dir`."""
    import pandas as pd

    out = tmp_path / "run"
    code = main(["run", "--model", f"hf:{tiny_random_checkpoint}", "--data-dir", str(hub_dir),
                 "--tasks", "mme,mmmu_val,mmstar,pope_random",
                 "--shifts", "clean,defocus_blur@1,keyboard@1", "--batch-size", "3", "--output", str(out),
                 "--cache-dir", str(tmp_path / "cache"), "--no-cache"])
    assert code == 0
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 3 * (4 + 3 + 2 + 4) and not [r for r in records if r["error"]]
    results = pd.read_csv(out / "results.csv")
    mme = results[(results.task == "mme") & (results["shift"] == "clean")].set_index("metric")["value"]
    assert {"mme_perception", "mme_cognition", "accuracy_plus", "score/existence"} <= set(mme.index)
    blurred = {r["sample_id"]: r["input_hash"] for r in records if r["task"] == "mmmu_val" and r["shift"] != "clean"}
    clean = {r["sample_id"]: r["input_hash"] for r in records if r["task"] == "mmmu_val" and r["shift"] == "clean"}
    assert all(blurred[k] != clean[k] for k in clean)
