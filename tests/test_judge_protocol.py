"""The judge setup as the Vittle evaluation runs it: rubrics, context, temperature and repeats declared per task,
read back by the judge, recorded in manifest.json, and kept by domain swaps; and a judge answering partly out
of format, end to end."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from vittle_bench import domains
from vittle_bench.adapters.open_ended import OpenEndedAdapter
from vittle_bench.cli import main
from vittle_bench.config import ConfigError, load_task_specs
from vittle_bench.data.llava_bench import TABLE
from vittle_bench.data.sources import load_samples
from vittle_bench.judges.openai import OpenAIJudge
from vittle_bench.judges.rubrics import RUBRICS
from vittle_bench.run_manifest import domain_manifest
from vittle_bench.run_plan import RunOptions, make_adapter, plan_run
from vittle_bench.schema import Sample

from fake_openai_server import FakeServer, ok
from fixtures_hub import build_hub_fixtures

RULES = json.loads((Path(__file__).parent / "data" / "llava_rule.json").read_text())
SPECS = load_task_specs()


@pytest.mark.parametrize("rubric,rule_keys", [
    ("default", ["default"]), ("llava_visual", ["conv", "detail", "complex"]),
    ("llava_bench", ["llava_bench_conv", "llava_bench_detail", "llava_bench_complex"]),
    ("llava_bench_wilder", ["llava_bench_wilder"]), ("wildvision_bench", ["wildvision_bench"]),
])
def test_rubrics_are_the_rule_json_texts(rubric, rule_keys):
    assert all(RUBRICS[rubric] == RULES[key]["prompt"] and RULES[key]["role"] == "Assistant" for key in rule_keys)


def llava_visual_review(entry: dict, question: str, reference: str, answer: str, category: str) -> str:
    """The user message of LLaVA's llava/eval/eval_gpt_review_visual.py for one answer (its `content`)."""
    cap_str = "\n".join(entry["captions"])
    box_str = "\n".join([f'{instance["category"]}: {instance["bbox"]}' for instance in entry["instances"]])
    rule = RULES[category]
    prompt, role = rule["prompt"], rule["role"]
    return (f"[Context]\n{cap_str}\n\n{box_str}\n\n"
            f"[Question]\n{question}\n\n"
            f"[{role} 1]\n{reference}\n\n[End of {role} 1]\n\n"
            f"[{role} 2]\n{answer}\n\n[End of {role} 2]\n\n"
            f"[System]\n{prompt}\n\n")


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory) -> Path:
    return build_hub_fixtures(tmp_path_factory.mktemp("hub"))


def test_llava_bench_coco_judge_message_equals_llavas_visual_review(hub_dir, tmp_path):
    spec = SPECS["llava_bench_coco"]
    adapter = OpenEndedAdapter(**{**spec.adapter_args, "judge": "openai:j"})
    table = {json.loads(line)["id"]: json.loads(line) for line in
             (Path(__file__).parents[1] / "vittle_bench" / "data" / "llava_bench" / TABLE).read_text().splitlines()}
    for sample in map(adapter.prepare, load_samples(spec, tmp_path, None, hub_dir)):
        entry = table[sample.meta["image_id"]]
        got = adapter.get_judge().messages(sample, "MODEL ANSWER")[1]["content"]
        assert got == llava_visual_review(entry, sample.question, sample.answer or "", "MODEL ANSWER", sample.category)


def _judge_server(reviews_by_attempt: dict[str, list[str]]) -> FakeServer:
    """Reviews scripted per model answer ("[Assistant 2]\\n<answer>")."""
    def key_of(payload: dict) -> str:
        content = payload["messages"][1]["content"]
        return next((a for a in reviews_by_attempt if f"[Assistant 2]\n{a}\n" in content), "?")
    return FakeServer(key_of=key_of, scripts={a: [ok(r) for r in rs] for a, rs in reviews_by_attempt.items()})


def test_task_yaml_sets_rubric_temperature_and_repeats_which_are_averaged(tmp_path):
    spec = SPECS["llava_bench_coco"]
    assert spec.adapter_args["judge_repeats"] == 3 and spec.adapter_args["judge_temperature"] == 0.0
    sample = Sample("t", "0", "What is it?", answer="A suitcase.", context="captions\n\nboxes", category="conv")
    with _judge_server({"steady": ["8 7\nfine", "8 5\nfine", "8 6\nfine"], "one bad": ["8 7", "Score: 8 7", "8 7"]}) \
            as server:
        options = RunOptions(models=[], output=tmp_path, judge="openai:judge", judge_args={"base_url": server.url},
                             cache_dir=tmp_path / "cache")
        adapter = make_adapter(spec, options)
        steady, bad = adapter.score_batch([(sample, None, "steady"), (sample, None, "one bad")])  # type: ignore[list-item]
        again = make_adapter(spec, options).score_batch([(sample, None, "steady")])  # type: ignore[list-item]
    assert steady[:2] == (pytest.approx(6.0), 8.0) and bad == (None, None, None)  # one unreadable review fails it
    # the record keeps the three reviews' text, numbered, from which the averaged scores were read (the reviews run
    # concurrently, so which scripted reply each repeat got varies)
    parts = re.split(r"\[review (\d) of 3\]\n", steady.review)
    assert parts[0] == "" and parts[1::2] == ["1", "2", "3"]
    assert sorted(p.strip() for p in parts[2::2]) == ["8 5\nfine", "8 6\nfine", "8 7\nfine"]
    assert again == [steady] and len(server.log) == 6  # each review is cached under its own key, its text too
    payloads = [entry["payload"] for entry in server.log]
    assert {p["temperature"] for p in payloads} == {0.0}
    assert all(RUBRICS["llava_visual"] in p["messages"][1]["content"] for p in payloads)
    judge = adapter.get_judge()
    assert isinstance(judge, OpenAIJudge) and judge.repeats == 3 and judge.stats["unparseable_reviews"] == 1


def test_run_level_judge_args_override_the_task_protocol(tmp_path):
    options = RunOptions(models=[], output=tmp_path, judge="openai:judge",
                         judge_args={"temperature": 0.7, "repeats": 1})
    judge = make_adapter(SPECS["llava_bench_coco"], options).get_judge()
    assert isinstance(judge, OpenAIJudge)
    assert (judge.temperature, judge.repeats, judge.rubric) == (0.7, 1, "llava_visual")


@pytest.mark.parametrize("args,message", [({"judge_rubric": "llava"}, "unknown judge rubric"),
                                          ({"judge_repeats": 0}, "judge_repeats")])
def test_bad_protocol_arguments_are_config_errors(args, message):
    with pytest.raises(ConfigError, match=message):
        OpenEndedAdapter(**args)


def test_every_llava_bench_style_task_declares_its_protocol():
    protocols = {t: (SPECS[t].adapter_args.get("judge_rubric"), SPECS[t].adapter_args.get("judge_temperature"))
                 for t in ("llava_bench_coco", "llava_bench_in_the_wild", "llava_bench_wilder", "wildvision_bench")}
    assert protocols == {"llava_bench_coco": ("llava_visual", 0.0), "llava_bench_in_the_wild": ("llava_bench", 0.0),
                         "llava_bench_wilder": ("llava_bench_wilder", 1.0),
                         "wildvision_bench": ("wildvision_bench", 1.0)}
    assert SPECS["wildvision_bench"].adapter == "open_ended"
    assert SPECS["wildvision_bench_pairwise"].adapter == "pairwise"


def test_domain_swap_keeps_the_judge_protocol(hub_dir, tmp_path):
    """llava_bench_coco x domain:coco_de: the judge sees the clean cell's context, category, rubric and reference;
    only the question differs (the translated one, asking for an English answer)."""
    options = RunOptions(models=[], output=tmp_path / "out", tasks="llava_bench_coco", shifts="domain:coco_de",
                         judge="openai:j", cache_dir=tmp_path, data_dir=hub_dir)
    plan = plan_run(options)
    coco, (clean, german) = plan.tasks[0], plan.conditions
    clean_rows = [plan.adapter(coco.task, clean).prepare(s) for s in load_samples(coco, tmp_path, None, hub_dir)]
    swapped = plan.domains.samples(coco, german, tmp_path, None, hub_dir)
    adapter = plan.adapter(coco.task, german)
    assert adapter.judge_protocol() == plan.adapters[coco.task].judge_protocol()
    by_id = {s.sample_id: s for s in clean_rows}
    compared = 0
    for row in map(adapter.prepare, swapped):
        assert row.load_error is None and row.question.endswith(" Please answer in English.")
        clean_row = by_id[row.sample_id]
        messages = [adapter.get_judge().messages(s, "ANSWER")[1]["content"] for s in (clean_row, row)]
        assert messages[0].replace(clean_row.question, row.question) == messages[1] != messages[0]
        assert (row.context, row.category, row.answer) == (clean_row.context, clean_row.category, clean_row.answer)
        compared += 1
    assert compared == 2
    recorded, = domain_manifest(plan)
    assert (recorded["condition"], recorded["judged_as"], recorded["judge_protocol"]) == (
        "domain:coco_de", "llava_bench_coco", plan.adapters[coco.task].judge_protocol())


def test_judged_as_items_are_loaded_once_and_hold_no_images(hub_dir, tmp_path, monkeypatch):
    """Three translations judged as llava_bench_coco: its 90 items are read once for all three cells, and the
    joined rows keep their own (translated) images and questions but the clean items' references."""
    loaded: list[str] = []
    real_load = domains.load_samples

    def counting_load(spec, *args, **kwargs):
        loaded.append(spec.task if spec.source.endswith("coco") else spec.source)
        return real_load(spec, *args, **kwargs)

    monkeypatch.setattr(domains, "load_samples", counting_load)
    options = RunOptions(models=[], output=tmp_path / "out", tasks="llava_bench_coco",
                         shifts="domain:coco_de,domain:coco_zh,domain:coco_ko", cache_dir=tmp_path, data_dir=hub_dir)
    plan = plan_run(options)
    coco, conditions = plan.tasks[0], plan.conditions[1:]
    clean = {s.sample_id: s for s in load_samples(coco, tmp_path, None, hub_dir)}
    for condition in conditions:
        rows = list(plan.domains.samples(coco, condition, tmp_path, None, hub_dir))
        assert rows and all(r.images and r.meta["domain"] == condition.shift.domain for r in rows)
        assert all(r.answer == clean[r.sample_id].answer for r in rows)
    assert loaded.count("llava_bench_coco") == 1 and len(loaded) == 4
    assert all(not item.images for items in plan.domains._items.values() for item in items.values())


def _review(content: str) -> str:
    """A judge that answers a third of its reviews in prose (LLaVA's rule reads neither form)."""
    shape = int(hashlib.sha256(content.encode()).hexdigest(), 16) % 3
    return ("Scores for Assistant 1 and 2: 8 7\nAssistant 1 is more detailed.",
            "Assistant 1 and Assistant 2 scores: 8 7", "8 7\nAssistant 1 is more detailed.")[shape]


def test_a_judge_answering_partly_out_of_format_end_to_end(tiny_random_checkpoint, world_cache, tmp_path):
    """Every well-formed review says reference 8 / model 7, so the relative score is exactly 87.5; every other
    review is a failed judgment, counted (the old parser read them as (2, 3) and (2, 8))."""
    shapes: list[int] = []

    def answer(payload: dict) -> tuple:
        review = _review(payload["messages"][1]["content"])
        shapes.append(review.startswith("8 7"))
        return ok(review)

    with FakeServer(default=answer) as server:
        out = tmp_path / "run"
        assert main(["run", "--model", f"hf:{tiny_random_checkpoint}", "--tasks", "shapes_open", "--shifts", "clean",
                     "--limit", "24", "--judge", "openai:judge", "--judge-args", f"base_url={server.url}",
                     "--output", str(out), "--cache-dir", str(world_cache), "--no-cache"]) == 0
    results = pd.read_csv(out / "results.csv").set_index("metric")["value"]
    assert len(shapes) == 24 and 0 < sum(shapes) < 24
    assert results["relative_score"] == pytest.approx(87.5)
    assert results["judge_failed"] == 24 - sum(shapes)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tasks"][0]["judge_protocol"] == {"rubric": "auto", "temperature": 0.0, "repeats": 1}
