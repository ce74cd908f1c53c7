"""Judges: the LLaVA-Bench rubric and its robust score parsing, the judgment cache, failures counted and never
imputed, and the offline embedding stand-in (packaged all-MiniLM weights) labelled as such."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from vittle_bench.adapters.open_ended import OpenEndedAdapter
from vittle_bench.adapters.pairwise import PairwiseAdapter
from vittle_bench.cli import main
from vittle_bench.config import ConfigError
from vittle_bench.judges import load_judge
from vittle_bench.judges.cache import JudgmentCache
from vittle_bench.judges.openai import OpenAIJudge, parse_score_pair
from vittle_bench.judges.pairwise import parse_verdict
from vittle_bench.judges.rubrics import judge_prompt
from vittle_bench.registry import UnknownNameError
from vittle_bench.runner import aggregate_cell
from vittle_bench.schema import Sample, SampleResult

from fake_openai_server import FakeServer, ok, status

FAST = {"timeout": 2.0, "max_retries": 1, "parse_retries": 1, "backoff": 0.01}


def sample(i: int, reference: str | None = "A red circle and a blue square.", context: str | None = None) -> Sample:
    return Sample("t", f"s{i}", "What is in the image?", answer=reference, context=context, category="detail")


def llava_parse_score(review: str) -> list[float]:
    """LLaVA's `parse_score` (llava/eval/eval_gpt_review_visual.py; Vittle's scripts are the same), line for line:
    the oracle our parser is checked against."""
    try:
        score_pair = review.split("\n")[0]
        score_pair = score_pair.replace(",", " ")
        sp = score_pair.split(" ")
        if len(sp) == 2:
            return [float(sp[0]), float(sp[1])]
        return [-1, -1]
    except Exception:  # noqa: BLE001 - the reference swallows everything
        return [-1, -1]


# (review, ours, LLaVA's): the shapes real GPT-4 reviews take. Ours is LLaVA's rule except where the last column
# differs: a stripped review, any whitespace between the scores, and scores outside 0-10 refused (docstring).
SCORE_TABLE = [
    ("8 7\nAssistant 2 is less detailed.", (8.0, 7.0), [8.0, 7.0]),
    ("9 8\n\nBoth assistants describe the image well.", (9.0, 8.0), [9.0, 8.0]),
    ("8,7\nAssistant 1 is more accurate.", (8.0, 7.0), [8.0, 7.0]),
    ("7.5 6\nExplanation follows.", (7.5, 6.0), [7.5, 6.0]),
    ("10 10", (10.0, 10.0), [10.0, 10.0]),
    ("0 6", (0.0, 6.0), [0.0, 6.0]),
    ("8 7.", (8.0, 7.0), [8.0, 7.0]),
    ("8, 7\nBoth are good.", (8.0, 7.0), [-1, -1]),  # LLaVA splits "8  7" into three parts
    ("  8 7\nLeading spaces.", (8.0, 7.0), [-1, -1]),
    ("\n8 7\nA blank first line.", (8.0, 7.0), [-1, -1]),
    ("8\t7", (8.0, 7.0), [-1, -1]),
    ("85 70\nOn a 100-point scale.", None, [85.0, 70.0]),  # outside the rubric's 1-10: refused
    ("-1 -1", None, [-1.0, -1.0]),
    ("nan 7", None, [float("nan"), 7.0]),
    # prose, labels and markdown around the scores: unreadable for both
    ("Scores for Assistant 1 and 2: 8 7\nAssistant 1 gives more detail.", None, [-1, -1]),
    ("Assistant 1 and Assistant 2 scores: 8 7", None, [-1, -1]),
    ("Assistant 1: 8\nAssistant 2: 3", None, [-1, -1]),
    ("Assistant 1 receives a score of 9, while Assistant 2 gets 2.", None, [-1, -1]),
    ("**9 6**", None, [-1, -1]), ("**9/10 6/10**", None, [-1, -1]), ("8/10 7/10", None, [-1, -1]),
    ("Scores: 10 out of 10, 4 out of 10", None, [-1, -1]), ("Here are my scores:\n7.5 6", None, [-1, -1]),
    ("(8, 7)", None, [-1, -1]), ("8 7 6", None, [-1, -1]), ("8", None, [-1, -1]), ("", None, [-1, -1]),
    ("I cannot judge this.", None, [-1, -1]), ("Assistant 1: 8 (Assistant 2 missing)", None, [-1, -1]),
]


@pytest.mark.parametrize("review,expected,llava", SCORE_TABLE)
def test_score_pairs_follow_llavas_first_line_rule(review, expected, llava):
    reference = llava_parse_score(review)
    assert reference == llava or (np.isnan(reference[0]) and np.isnan(llava[0]))  # the table describes LLaVA
    assert parse_score_pair(review) == expected


def test_prompt_follows_the_llava_bench_layout():
    with_context = judge_prompt("Q?", "REF", "ANS", "a caption")
    assert with_context.startswith("[Context]\na caption\n\n[Question]\nQ?\n\n"
                                   "[Assistant 1]\nREF\n\n[End of Assistant 1]")
    assert "[Assistant 2]\nANS\n\n[End of Assistant 2]\n\n[System]\n" in with_context
    assert "represented with a few sentences describing the image" in with_context
    bare = judge_prompt("Q?", "REF", "ANS", None)
    assert bare.startswith("[Question]") and "describing the image" not in bare
    assert "two values indicating the scores for Assistant 1 and 2" in bare


def _review_by_answer(reviews: dict[str, list]) -> FakeServer:
    def key_of(payload: dict) -> str:
        return next((a for a in reviews if f"[Assistant 2]\n{a}\n" in payload["messages"][1]["content"]), "?")

    return FakeServer(key_of=key_of, scripts=reviews)


def test_judge_caches_successes_and_retries_failures(tmp_path):
    reviews = {"good": [ok("9 6")], "flaky": [status(503), ok("8 8")], "bad": [ok("no idea")], "down": [status(500)]}
    items = [(sample(0), "good"), (sample(1), "flaky"), (sample(2), "bad"), (sample(3), "down"),
             (sample(4, None), "good")]
    cache = tmp_path / "judgments.sqlite"
    with _review_by_answer(reviews) as server:
        judge = OpenAIJudge("judge", base_url=server.url, cache=str(cache), **FAST)
        first = judge.judge_many(items)
        calls = len(server.log)
        again = OpenAIJudge("judge", base_url=server.url, cache=str(cache), **FAST).judge_many(items)
        rejudged = len(server.log) - calls
        other = OpenAIJudge("other-judge", base_url=server.url, cache=str(cache), **FAST).judge_many(items[:1])
    assert [(j.model_score, j.reference_score, j.failed) for j in first] == [
        (6.0, 9.0, False), (8.0, 8.0, False), (None, None, True), (None, None, True), (None, None, True)]
    assert "unreadable" in first[2].error and "HTTP 500" in first[3].error and "no reference" in first[4].error
    # retry on 503; parse retry on "no idea"; request retry on 500; none without reference
    assert calls == 1 + 2 + 2 + 2
    assert judge.stats == {"judged": 2, "cached": 0, "failed": 2, "unparseable_reviews": 2}
    assert [(j.model_score, j.failed) for j in again] == [(6.0, False), (8.0, False), (None, True), (None, True),
                                                          (None, True)]
    assert rejudged == 2 + 2  # only the failures were asked again
    assert len(JudgmentCache(cache)) == 3 and other[0].model_score == 6.0  # a different judge model is a new key


def test_cache_key_covers_both_answers_and_the_prompt(tmp_path):
    with _review_by_answer({"x": [ok("7 5")], "y": [ok("7 2")]}) as server:
        judge = OpenAIJudge("judge", base_url=server.url, cache=str(tmp_path / "j.sqlite"), **FAST)
        judge.judge_many([(sample(0), "x")])
        judge.judge_many([(sample(0), "y"), (sample(0, reference="Another reference."), "x"),
                          (sample(0, context="a caption"), "x"), (sample(0), "x")])
    assert len(server.log) == 4 and judge.stats["cached"] == 1


def test_judge_requests_run_concurrently():
    with FakeServer(default=lambda p: ok("8 8"), delay=0.15) as server:
        judge = OpenAIJudge("judge", base_url=server.url, concurrency=4, **FAST)
        assert all(not j.failed for j in judge.judge_many([(sample(i), f"answer {i}") for i in range(8)]))
    assert 2 <= server.peak_in_flight <= 4


def _record(score, reference, category="detail") -> SampleResult:
    return SampleResult("m", "t", "clean", "clean", 0, "s", "", "", "ref", "ans", "ans", True, score,
                        category=category, reference_score=reference, condition="clean")


def test_failed_judgments_are_counted_and_excluded_never_imputed():
    adapter = OpenEndedAdapter(judge="openai:judge")
    records = [_record(6.0, 8.0), _record(None, None), _record(4.0, 8.0, "conv"), _record(None, None, "conv")]
    rows = {v.metric: (v.value, v.n) for v in adapter.aggregate(records, seed=0)}
    assert rows["judge_failed"] == (2.0, 4)
    assert rows["relative_score"] == (pytest.approx(100 * 10 / 16), 2)
    assert rows["relative_score/conv"][0] == pytest.approx(50.0)
    assert rows["relative_score/detail"][0] == pytest.approx(75.0)


def test_metric_names_label_stand_in_judges_and_bad_specs_fail_early():
    assert OpenEndedAdapter(judge="openai:gpt-4o-2024-08-06").headline == "relative_score"
    assert OpenEndedAdapter(judge="embedding").headline == "relative_score_embedding"
    assert OpenEndedAdapter(judge="overlap").headline == "relative_score_overlap"
    with pytest.raises(UnknownNameError, match="did you mean embedding"):
        OpenEndedAdapter(judge="embeding")
    with pytest.raises(UnknownNameError, match="needs a model"):
        OpenEndedAdapter(judge="openai")
    with pytest.raises(UnknownNameError, match="takes no model"):
        OpenEndedAdapter(judge="embedding:minilm")
    assert "judge_args" not in repr(OpenEndedAdapter(judge="openai:j", judge_args={"api_key": "sk-x"}))


@pytest.mark.parametrize("judge", ["openai:gpt-4o-2024-08-06", "embedding", "overlap"])
def test_every_judges_metric_is_what_leaderboards_and_compare_show(judge):
    """A run with any judge ends by printing its leaderboard (the embedding judge's run used to stop with
    'no results to show'), and its cells can be compared sample by sample."""
    from vittle_bench.adapters.base import declared_metric

    adapter = OpenEndedAdapter(judge=judge)
    records = [_record(6.0, 8.0), _record(4.0, 8.0, "conv")]
    primary = {cell.metric for cell in aggregate_cell(adapter, records, seed=0) if cell.primary}
    metric = declared_metric(adapter.headline)
    assert primary == {adapter.headline} and metric is not None and metric.parts is not None


# ----------------------------------------------------------------------------- the offline embedding judge
@pytest.fixture(scope="module")
def embedding_judge():
    return load_judge("embedding")


def test_embedding_judge_scores_closeness_to_the_reference(embedding_judge):
    reference = sample(0, "There is a red circle and a blue square.")
    same, paraphrase, unrelated, empty = embedding_judge.judge_many([
        (reference, "There is a red circle and a blue square."),
        (reference, "A blue square and a red circle are in the image."),
        (reference, "The stock market fell sharply on Tuesday."),
        (reference, "")])
    assert same.model_score == pytest.approx(10.0, abs=1e-3) and same.reference_score == 10.0
    assert paraphrase.model_score > unrelated.model_score + 3
    assert 1.0 <= unrelated.model_score < 5.0 and empty.model_score == 1.0 and not empty.failed
    assert embedding_judge.judge(sample(1, None), "anything").failed
    assert embedding_judge.label == "embedding" and embedding_judge.name == "embedding"


EMBEDDING_TASK = """task: open_embedding
source: builtin:shapes
subset: open
adapter: open_ended
adapter_args: {judge: embedding, max_new_tokens: 8}
"""


@pytest.mark.slow
def test_embedding_judge_end_to_end_is_labelled(tiny_random_checkpoint, world_cache, tmp_path, embedding_judge):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "open_embedding.yaml").write_text(EMBEDDING_TASK)
    out = tmp_path / "run"
    assert main(["run", "--model", f"hf:{tiny_random_checkpoint}", "--tasks", "open_embedding", "--shifts", "clean",
                 "--limit", "4", "--include-path", str(tmp_path / "tasks"), "--output", str(out),
                 "--cache-dir", str(world_cache)]) == 0
    results = pd.read_csv(out / "results.csv")
    assert "relative_score_embedding" in set(results.metric) and "relative_score" not in set(results.metric)
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert all(r["scorer"] == "embedding" and 1.0 <= r["score"] <= 10.0 and r["reference_score"] == 10.0
               for r in records)
    value = results.set_index("metric").loc["relative_score_embedding", "value"]
    assert value == pytest.approx(100 * np.mean([r["score"] for r in records]) / 10.0, rel=1e-5)


# ----------------------------------------------------------------------------- WildVision's pairwise judge
@pytest.mark.parametrize("review,expected", [
    ("My final verdict is tie: [[A=B]]", 0),
    ("B is far better.\n\nMy final verdict is: [[B>>A]]", 2),
    ("[[B>A]]", 1), ("Assistant A wins: [[A>B]].", -1), ("**[[A>>B]]**", -2),
    ("Verdict [[B>A]] ... as said, [[B>A]]", 1),  # the same label twice is one verdict
])
def test_pairwise_verdicts_are_parsed(review, expected):
    assert parse_verdict(review) == expected


@pytest.mark.parametrize("review", ["", "B is better.", "[[B>A]] no wait [[A>B]]", "[[C>A]]", "[[]]", "[B>A]"])
def test_unreadable_verdicts_are_not_guessed(review):
    assert parse_verdict(review) is None


def test_pairwise_judge_shows_image_prompt_and_both_answers_and_scores_from_the_models_side(tmp_path):
    from PIL import Image

    from vittle_bench.judges.pairwise import PairwiseJudge

    image = Image.new("RGB", (8, 6), (200, 10, 10))
    wild = Sample("wildvision_bench", "q1", "What is funny here?", images=(image,), answer="BASELINE ANSWER")
    verdicts = {"good": [ok("... [[B>>A]]")], "worse": [ok("[[A>B]]")], "vague": [ok("Both fine.")]}

    def key_of(payload: dict) -> str:
        text = payload["messages"][1]["content"][0]["text"]
        return next(a for a in verdicts if f"Assistant B's Answer|>\n{a}\n" in text)

    with FakeServer(key_of=key_of, scripts=verdicts) as server:
        judge = PairwiseJudge("judge", base_url=server.url, cache=str(tmp_path / "j.sqlite"), **FAST)
        got = judge.judge_many([(wild, "good"), (wild, "worse"), (wild, "vague")])
        llava = OpenAIJudge("judge", base_url=server.url, cache=str(tmp_path / "j.sqlite"), **FAST)
        assert llava.identity["protocol"] != judge.identity["protocol"]  # the two protocols never share a cache key
    assert [(j.model_score, j.reference_score, j.failed) for j in got] == [(2.0, 0.0, False), (-1.0, 0.0, False),
                                                                           (None, None, True)]
    payload = server.log[0]["payload"]
    assert payload["temperature"] == 0.0
    assert payload["messages"][0]["content"].startswith("Please act as an impartial judge")
    text, picture = payload["messages"][1]["content"]
    assert text["text"].startswith("<|User Prompt|>\nWhat is funny here?\n\n<|The Start of Assistant A's Answer|>\n"
                                   "BASELINE ANSWER\n<|The End of Assistant A's Answer|>")
    assert picture["image_url"]["url"].startswith("data:image/png;base64,")
    assert len(server.log) == 1 + 1 + 2  # the unreadable verdict was asked once more


def _verdict(score) -> SampleResult:
    return SampleResult("m", "wildvision_bench", "clean", "clean", 0, "s", "", "", "ref", "ans", "ans", True, score,
                        reference_score=None if score is None else 0.0, condition="clean")


def test_pairwise_adapter_reports_win_tie_loss_and_needs_an_llm_judge():
    adapter = PairwiseAdapter(judge="openai:gpt-4o")
    rows = {v.metric: v.value for v in adapter.aggregate([_verdict(v) for v in (2, 1, 0, -1, None, 1)], seed=0)}
    assert rows["win_rate"] == pytest.approx(100 * 3 / 5) and rows["tie_rate"] == pytest.approx(100 / 5)
    assert rows["loss_rate"] == pytest.approx(100 / 5) and rows["mean_verdict"] == pytest.approx(3 / 5)
    assert rows["judge_failed"] == 1.0
    for judge in ("", "overlap", "embedding", "openai"):
        with pytest.raises(ConfigError, match="--judge openai:MODEL"):
            PairwiseAdapter(judge=judge)


def test_the_pairwise_judge_is_registered_and_what_a_pairwise_task_loads_for_openai_model(tmp_path):
    from vittle_bench.judges import JUDGES
    from vittle_bench.judges.pairwise import PairwiseJudge

    assert JUDGES.get("pairwise") is PairwiseJudge and "pairwise" in JUDGES.names()
    adapter = PairwiseAdapter(judge="openai:gpt-4o", judge_repeats=2, judge_cache=str(tmp_path / "j.sqlite"),
                              judge_args={"base_url": "http://127.0.0.1:9", "concurrency": 3})
    judge = adapter.get_judge()
    assert type(judge) is PairwiseJudge and judge.name == "openai:gpt-4o" and judge.model == "gpt-4o"
    assert (judge.repeats, judge.concurrency, judge.temperature) == (2, 3, 0.0)
    assert judge.identity["protocol"] == "wildvision-pairwise/1" and judge.client.base_url == "http://127.0.0.1:9"
    with pytest.raises(ConfigError, match="only pairwise tasks use it"):  # verdicts are no relative score
        OpenEndedAdapter(judge="pairwise:gpt-4o")


def test_the_pairwise_judge_is_no_judge_value_for_a_run(tmp_path, capsys):
    code = main(["run", "--model", "builtin:tiny-llava", "--tasks", "shapes_pope_random", "--judge", "pairwise:gpt-4o",
                 "--shifts", "clean", "--output", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "pairwise tasks take --judge openai:MODEL" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_wildvision_without_an_llm_judge_exits_2_before_any_model_loads(tmp_path, capsys):
    code = main(["run", "--model", "builtin:tiny-llava", "--tasks", "wildvision_bench_pairwise", "--shifts", "clean",
                 "--output", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "task wildvision_bench_pairwise" in err and "--judge openai:MODEL" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_win_rate_is_a_primary_percent_metric_whose_per_sample_form_matches_the_adapter():
    from vittle_bench.adapters.base import declared_metric
    from vittle_bench.metrics.base import PERCENT

    records = [_verdict(v) for v in (2, 1, 0, -1, None, 1)]
    frame = pd.DataFrame({"score": [r.score for r in records], "error": [None] * len(records)})
    win_rate = declared_metric("win_rate")
    assert win_rate is not None and win_rate.parts is not None
    num, den, counted = win_rate.parts(frame)
    adapter = PairwiseAdapter(judge="openai:j")
    adapter_value = {v.metric: v.value for v in adapter.aggregate(records, 0)}["win_rate"]
    assert 100 * num.sum() / den.sum() == pytest.approx(adapter_value) and counted.tolist() == [1, 1, 1, 1, 0, 1]
    assert win_rate.binary and adapter.headline == "win_rate" and win_rate.unit == PERCENT
