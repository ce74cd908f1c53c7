"""Text shifts: MM_Robustness's levels and mechanisms (nlpaug character augmenters with their defaults, EDA
word operations with the meaning filter), the EMI paper's named conditions, declared severities, protected
spans on every hub task family's real loader, translation's English-answer suffix, and determinism across
processes. The meaning filter runs with a bag-of-words encoder here (fast, deterministic); the packaged
MiniLM encoder is exercised in the slow test at the end."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import textwrap
import zlib
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from vittle_bench.schema import Sample
from vittle_bench.shifts import SHIFTS, eda, paraphrase, parse_condition, sample_rng
from vittle_bench.shifts.protect import protected_spans
from vittle_bench.shifts.text import CHAR_SHIFTS, WORD_SHIFTS

TEXT_SHIFTS = CHAR_SHIFTS + WORD_SHIFTS
LEVELS = (1, 2, 3, 4, 5, 6, 7)
BOW_SOURCE = textwrap.dedent("""
    import re, zlib
    import numpy as np

    def bow_encode(texts):
        rows = np.zeros((len(texts), 512))
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                rows[i, zlib.crc32(word.encode()) % 512] += 1
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)
""")
_namespace: dict = {"re": re, "zlib": zlib, "np": np}
exec(BOW_SOURCE, _namespace)  # noqa: S102 - the same source runs in the subprocesses of the determinism test
bow_encode = _namespace["bow_encode"]


PACKAGED_ENCODE = paraphrase.encode


@pytest.fixture(autouse=True)
def bag_of_words_filter(monkeypatch):
    monkeypatch.setattr(paraphrase, "encode", bow_encode)


def shifted(label: str, sample: Sample, seed: int = 0) -> Sample:
    condition = parse_condition(label)
    return condition.shift.apply(sample, sample_rng(seed, condition.label, sample.sample_id))


QUESTIONS = [
    "What is the man on the left holding in his hand, and why might he be holding it?",
    "Describe the following image in detail, including the colours of every visible object.",
    "How many people are standing near the red double-decker bus at the corner of the street?",
    "What might be the purpose of the large wooden structure standing behind the brown horses?",
    "Which option describes the relationship between the leather suitcase and the books correctly?",
    "Explain why the kitchen counter looks unusually crowded with vegetables and cooking utensils.",
]


# ----------------------------------------------------------------------------------------- levels, names

def test_severities_are_declared_validated_and_listed(capsys):
    from vittle_bench.cli import main

    for name in TEXT_SHIFTS:
        assert SHIFTS.get(name)(1).severities == LEVELS
        assert parse_condition(f"{name}@7").severity == 7
        with pytest.raises(ValueError, match=f"one of 1-7 for {name}"):
            parse_condition(f"{name}@8")
    assert SHIFTS.get("frost")(1).severities == (1, 2, 3, 4, 5)
    with pytest.raises(ValueError, match="one of 1-5 for frost"):
        parse_condition("frost@6")
    with pytest.raises(ValueError, match="single level"):
        parse_condition("mt_de@2")
    with pytest.raises(ValueError, match=r"needs a severity, e.g. keyboard@1 \(severities 1-7\)"):
        parse_condition("keyboard")
    assert main(["list", "shifts"]) == 0
    listed = {line.split()[0]: line.split("severities ")[-1] for line in capsys.readouterr().out.splitlines()
              if "severities" in line}
    assert listed["keyboard"] == listed["synonym"] == "1-7" and listed["mt_de"] == "1" and listed["frost"] == "1-5"


def test_severity_is_the_mm_robustness_level_and_the_emi_names_are_reachable():
    for name in TEXT_SHIFTS:
        for level in LEVELS:
            assert parse_condition(f"{name}@{level}").shift.params()["word_fraction"] == round(0.05 * level, 2)
    # The EMI paper's KeyboardAug_1 / KeyboardAug_3 / sr_4 / sr_7.
    emi = {"keyboard@1": 0.05, "keyboard@3": 0.15, "synonym@4": 0.2, "synonym@7": 0.35}
    assert {label: parse_condition(label).shift.params()["word_fraction"] for label in emi} == emi
    assert parse_condition("keyboard@1").shift.params()["augmenter"] == "KeyboardAug"
    assert "sr" in parse_condition("synonym@4").shift.params()["method"]
    from vittle_bench.config import load_suites

    suite = load_suites()["emi_synthetic"]["conditions"]
    assert {c for c in suite if "@" in c and "+" not in c and c.split("@")[0] in TEXT_SHIFTS} == set(emi)


def test_character_shifts_touch_nlpaugs_word_count_with_digits_and_specials(monkeypatch):
    """nlpaug's rule with MM_Robustness's arguments: ceil(0.05 * level * tokens) words (at least 1, at most 10,
    only words of 4+ characters), typos drawn from the full keyboard (digits and special characters too)."""
    from vittle_bench.shifts import text

    seen: list[tuple[list[str], list[str]]] = []
    rebuild = text._TokenLayout.rebuild
    monkeypatch.setattr(text._TokenLayout, "rebuild", lambda self, tokens: seen.append((self.tokens, tokens))
                        or rebuild(self, tokens))
    typos: Counter[str] = Counter()
    for level in LEVELS:
        for k, question in enumerate(QUESTIONS):
            for seed in range(3):
                shifted(f"keyboard@{level}", Sample("t", f"q{k}", question), seed)
                before, after = seen[-1]
                assert before == [t for t in re.split(r"(\W)", question) if t.strip()]  # nlpaug's own tokens
                # 0.05 * level as the reference computes it: ceil(0.15000000000000002 * 20) is 4, not 3.
                expected = min(max(1, math.ceil(0.05 * level * len(before))), 10, sum(len(t) >= 4 for t in before))
                changed = [(a, b) for a, b in zip(before, after) if a != b]
                assert len(changed) == expected, (level, question, after)
                typos.update(cb for a, b in changed for ca, cb in zip(a, b) if ca != cb)
    assert sum(n for c, n in typos.items() if c.isdigit()) > 0
    assert sum(n for c, n in typos.items() if not c.isalnum()) > 0


# ----------------------------------------------------------------------------------------------- EDA

def test_eda_cleaning_and_synonym_replacement_follow_the_reference():
    assert eda.clean("What's the man's 2nd\tthumbs-up gesture?\n") == "whats the mans nd thumbs up gesture "
    assert "deuce" in eda.synonyms("two") and "" not in eda.synonyms("two") and "two" not in eda.synonyms("two")
    assert list(eda.synonyms("image")) == sorted(eda.synonyms("image"))
    words = [(w, 0) for w in eda.clean(QUESTIONS[2]).split()]
    for level in LEVELS:
        n = eda.count(eda.level_alpha(level), len(words))
        assert n == max(1, int(0.05 * level * len(words)))
        for seed in range(5):
            out = eda.synonym_replacement(words, n, np.random.default_rng(seed))
            replaced = {w for w, _ in words} - {w for w, _ in out}
            assert 1 <= len(replaced) <= n and not replaced & eda.STOP_WORDS
    question = "What is the color of the two suitcases in the image?"
    out = shifted("synonym@4", Sample("t", "1", question)).question
    assert out == out.lower() and re.fullmatch(r"[a-z ]+", out) and out != eda.clean(question).strip()


def test_eda_swap_is_not_adjacent_only_and_insertion_deletion_follow_the_rules():
    words = [(f"w{i}", 0) for i in range(12)]
    distances = set()
    for seed in range(40):
        out = eda.random_swap(words, 1, np.random.default_rng(seed))
        assert sorted(out) == sorted(words)
        moved = [i for i, (a, b) in enumerate(zip(words, out)) if a != b]
        if moved:
            distances.add(moved[1] - moved[0])
    assert max(distances) > 1
    for seed in range(20):
        kept = eda.random_deletion(words, 0.99, np.random.default_rng(seed))
        assert 1 <= len(kept) and all(w in words for w in kept)
    inserted = eda.random_insertion([("large", 0), ("car", 0)], 2, np.random.default_rng(0))
    added = [w for w, _ in inserted if w not in ("large", "car")]
    assert added and all(any(w in s.split() for s in eda.synonyms("large") + eda.synonyms("car")) for w in added)


def test_filter_keeps_the_first_similar_draw_else_the_last_of_100(monkeypatch):
    calls: list[list[str]] = []

    def encode(texts):
        calls.append(texts)
        return np.array([[1.0, 0.0] if t in ("original", "d7") else [0.0, 1.0] for t in texts])

    monkeypatch.setattr(paraphrase, "encode", encode)
    assert paraphrase.select("original", iter(f"d{i}" for i in range(1000))) == ("d7", 1.0, 8)
    assert calls[0][0] == "original" and len(calls[0]) == 1 + paraphrase.BATCHES[0]
    kept, score, made = paraphrase.select("original", iter(f"x{i}" for i in range(1000)))
    assert (kept, score, made) == ("x99", 0.0, 100)
    calls.clear()
    assert paraphrase.select("original", iter(["same"] * 1000))[2] == 100
    assert sum(len(c) for c in calls) == 2  # a repeated draw is encoded once


def test_word_shifts_keep_a_similar_draw_and_the_seed_matters():
    question = "Describe the large vehicle parked beside the old building in detail."
    sample = Sample("t", "q1", question)
    for name in WORD_SHIFTS:
        first, again = shifted(f"{name}@2", sample), shifted(f"{name}@2", sample)
        assert first.question == again.question != question
        base, out = bow_encode([question, first.question])
        assert float(base @ out) >= paraphrase.THRESHOLD, (name, first.question)
    outputs = {shifted("synonym@7", sample, seed=s).question for s in range(4)}
    assert len(outputs) > 1
    from nltk.corpus import wordnet

    assert wordnet.synsets("vehicle")  # WordNet is readable without NLTK's downloader


def test_text_severity_raises_the_change():
    def change(a: str, b: str) -> float:
        import difflib

        return 1 - difflib.SequenceMatcher(None, a.lower(), b.lower(), autojunk=False).ratio()

    for name in TEXT_SHIFTS:
        means = [np.mean([change(q, shifted(f"{name}@{level}", Sample("t", f"q{k}", q)).question)
                          for k, q in enumerate(QUESTIONS)]) for level in (1, 4, 7)]
        assert means[0] < means[1] < means[2], (name, means)


def test_question_stem_chars_still_protects_a_loaders_tail():
    stem = "Which option describes the object relationship in the image correctly?"
    tail = " The suitcase is on the book, or the suitcase is beneath the cat."
    sample = Sample("t", "mmstar-1", stem + tail, meta={"question_stem_chars": len(stem)})
    for name in TEXT_SHIFTS:
        out = shifted(f"{name}@7", sample).question
        assert out.endswith(tail) and out[: -len(tail)] != stem, (name, out)


# ------------------------------------------------------------------------------------ protected spans

def _image() -> Image.Image:
    return Image.new("RGB", (8, 8), (120, 60, 30))


# Rows with each hub dataset's columns, as the hub stores them; the task's own loader makes the Samples.
FAMILY_ROWS = {
    "mmmu_val": [
        {"id": "validation_Mechanical_Engineering_1", "question":
            "<image 1> A beam of length 3.5 m carries a load of 12,000 N. Given $\\sigma = \\frac{M y}{I}$, "
            "what is the maximum bending stress?\nAssume $g = 9.8\\,m/s^2$ and E=200 GPa.",
         "options": "['1.2 MPa', '<image 2>', '3.4 MPa', '4.5 MPa']", "answer": "A", "question_type": "multiple-choice",
         "image_1": _image(), "image_2": _image()},
        {"id": "validation_Electronics_2", "question":
            "Compare <image 1> and <image 2>: which circuit draws the larger current $I_1$ when V = 5 V?",
         "options": "[]", "answer": "the first", "question_type": "open", "image_1": _image(), "image_2": _image()},
    ],
    "scienceqa_img": [
        {"question": "Which tense does the sentence use?\nMona will print her name with care.",
         "image": _image(), "choices": ["past tense", "future tense", "present tense"], "answer": 1,
         "hint": "", "subject": "language science"},
        {"question": "Compare the motion of two ships. Which ship was moving at a higher speed?\n"
                     "A ship that moved 315 km in 5 hours (A) or a ship that moved 225 km in 5 hours (B)?",
         "image": _image(), "choices": ["the first ship", "the second ship"], "answer": 0,
         "hint": "Speed = distance / time.", "subject": "natural science"},
    ],
    "mmstar": [
        {"index": 0, "question": "What is the value of x in the equation 2x + 3 = 11?\nOptions: A: 3, B: 4, "
                                 "C: 5, D: 6", "image": _image(), "answer": "B", "category": "math",
         "l2_category": "algebra"},
        # Fallback row: the options do not re-render exactly, so they stay inside the question.
        {"index": 1, "question": "Which position does the person in the photograph hold? Options: A: 1, B: 2, "
                                 "C: 3, D: 4", "image": _image(), "answer": "A", "category": "coarse perception",
         "l2_category": "image scene and topic"},
    ],
    "mme": [
        {"question_id": "code_reasoning/0020.png", "question": "Is the output of the code 5? Please answer yes or no.",
         "image": _image(), "answer": "Yes", "category": "code_reasoning"},
        {"question_id": "numerical_calculation/0003.png",
         "question": "Is the answer to the arithmetic question in the image 3.25? Please answer yes or no.",
         "image": _image(), "answer": "No", "category": "numerical_calculation"},
    ],
    "pope_random": [
        {"question_id": "1", "question": "Is there a dining table in the image?", "image": _image(),
         "answer": "yes", "category": "random", "image_source": "COCO_val2014_000000310196"},
        {"question_id": "2", "question": "Is there a snowboard in the image?", "image": _image(), "answer": "no",
         "category": "random", "image_source": "COCO_val2014_000000310196"},
    ],
}
# Spans each family's questions must carry (so the check below is not vacuous).
EXPECTED_SPANS = {
    "mmmu_val": ["<image 1>", "3.5", "12,000", "$\\sigma = \\frac{M y}{I}$", "\n", "$g = 9.8\\,m/s^2$",
                 "E=200", "<image 2>", "$I_1$", "5"],
    "scienceqa_img": ["\n", "315", "(A)", "225", "(B)"],
    "mmstar": ["2x", "3 = 11", "Options: A: 1, B: 2, C: 3, D: 4"],
    "mme": ["5", "3.25"],
    "pope_random": [],
}


def family_samples(task: str) -> list[Sample]:
    from vittle_bench.config import load_task_specs
    from vittle_bench.data.rows import ColumnMap

    spec = load_task_specs()[task]
    cmap = ColumnMap.from_spec(spec.task, spec.columns)
    return [Sample(task=task, **cmap.build(task, row, i)) for i, row in enumerate(FAMILY_ROWS[task])]


def assert_spans_kept(before: Sample, after: Sample, label: str) -> None:
    spans = [before.question[a:b] for a, b in protected_spans(before.question, before.meta.get("question_stem_chars"))]
    position = 0
    for span in spans:
        found = after.question.find(span, position)
        assert found >= 0, (label, span, before.question, after.question)
        position = found + len(span)
    assert after.question.count("\n") == before.question.count("\n"), (label, after.question)
    assert (after.choices, after.answer, after.context, after.images) == (before.choices, before.answer,
                                                                          before.context, before.images)


@pytest.fixture(scope="module")
def tiny_marian(tmp_path_factory):
    """A tiny random MarianMT saved like a hub checkpoint (OPUS-MT itself needs the hub)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import MarianConfig, MarianMTModel, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("marian")
    words = ["is", "there", "a", "the", "in", "what", "which", "how", "many", "ist", "da", "eine", "im", "bild",
             "welche", "wie", "viele"]
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    word_level = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=word_level, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(path)
    torch.manual_seed(0)
    config = MarianConfig(vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                          decoder_ffn_dim=32, max_position_embeddings=1024, pad_token_id=0, eos_token_id=1,
                          decoder_start_token_id=0, forced_eos_token_id=1)
    MarianMTModel(config).save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("task", list(FAMILY_ROWS))
def test_protected_spans_are_byte_identical_after_every_text_shift(task, tiny_marian, monkeypatch):
    from vittle_bench.shifts import translation

    monkeypatch.setitem(translation.MT_MODELS, "de", tiny_marian)
    monkeypatch.setattr(translation, "BACK_TRANSLATION", (tiny_marian, tiny_marian))
    samples = family_samples(task)
    if task == "mmstar":
        assert "options_in_question" in samples[1].meta and "Options:" not in samples[0].question
    covered = [s.question[a:b] for s in samples for a, b in protected_spans(s.question)]
    for span in EXPECTED_SPANS[task]:
        assert any(span in c for c in covered), (task, span, covered)
    labels = [f"{name}@{level}" for name in (*TEXT_SHIFTS, "punctuation_insert") for level in LEVELS] + [
        "mt_de@1", "back_translation@1"]
    for sample in samples:
        changed = 0
        for label in labels:
            out = shifted(label, sample)
            assert_spans_kept(sample, out, label)
            changed += out.question != sample.question
        assert changed >= len(labels) - 2, (task, sample.question)  # a word_delete draw may delete nothing
    translated = shifted("mt_de@1", samples[0]).question
    assert translated.count(" Please answer in English.") == 1
    assert "Please answer in English." not in shifted("back_translation@1", samples[0]).question


# ------------------------------------------------------------------ MM_Robustness's remaining families

INSERTED_MARK = re.compile(r"(?:(?<=\s)|^)[.,!?;:] ")


def test_punctuation_insertion_follows_mm_robustness(monkeypatch):
    """MM_Robustness's `ip`: q ~ U{1, ..., int(0.05 * level * N + 1)} distinct words each get one of . , ! ? ; :
    put before them; taking the marks out gives the question back. Every draw passes the filter here."""
    monkeypatch.setattr(paraphrase, "encode", lambda texts: np.ones((len(texts), 1)))
    assert SHIFTS.get("punctuation_insert")(1).severities == LEVELS
    for level in (1, 4, 7):
        shift = parse_condition(f"punctuation_insert@{level}").shift
        assert shift.params()["ratio"] == round(0.05 * level, 2) and shift.family == "word"
        counts = Counter()
        for seed in range(20):
            for question in QUESTIONS:
                out = shifted(f"punctuation_insert@{level}", Sample("t", "1", question), seed).question
                assert INSERTED_MARK.sub("", out) == question
                most = int(0.05 * level * len(question.split()) + 1)
                counts[len(INSERTED_MARK.findall(out)) / most] += 1
        assert min(counts) > 0 and max(counts) == 1  # from one mark up to the reference's maximum
    assert shifted("punctuation_insert@3", Sample("t", "1", "<image 1>")).question == "<image 1>"


def test_back_translation_is_one_level_and_refuses_offline_in_one_line(tmp_path, capsys, monkeypatch):
    from vittle_bench import runner
    from vittle_bench.cli import main

    shift = parse_condition("back_translation@1").shift
    assert shift.needs_hub and shift.severities == (1,) and shift.family == "sentence"
    assert shift.params()["models"] == ["facebook/wmt19-en-de", "facebook/wmt19-de-en"]
    with pytest.raises(ValueError, match="single level"):
        parse_condition("back_translation@2")
    with pytest.raises(RuntimeError, match="wmt19-en-de.*hub"):
        shift.preflight()
    monkeypatch.setattr(runner, "load_model_when_needed", lambda *a, **k: pytest.fail("a model was loaded"))
    assert main(["run", "--model", "builtin:tiny-llava", "--tasks", "shapes_mc", "--shifts", "back_translation@1",
                 "--output", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vittle-bench: error: back_translation@1: machine-translation model") and "\n" not in err


# ----------------------------------------------------------------------------------------- determinism

_SCRIPT = BOW_SOURCE + textwrap.dedent("""
    import sys
    from vittle_bench.schema import Sample
    from vittle_bench.shifts import paraphrase, parse_condition, sample_rng
    paraphrase.encode = bow_encode
    questions = ["What is the man on the left holding in his hand, and why might he be holding it?",
                 "<image 1> Given 3.5 m and $x^2$, how many people are near the red bus?"]  # DETERMINISM_QUESTIONS
    for label in sys.argv[1:]:
        c = parse_condition(label)
        for i, q in enumerate(questions):
            s = Sample("t", f"id-{i}", q)
            print(label, i, c.shift.apply(s, sample_rng(7, c.label, s.sample_id)).question)
""")


DETERMINISM_QUESTIONS = ["What is the man on the left holding in his hand, and why might he be holding it?",
                         "<image 1> Given 3.5 m and $x^2$, how many people are near the red bus?"]


def _in_processes(labels: list[str], hash_seeds: tuple[str, ...]) -> None:
    import os

    procs = [subprocess.Popen([sys.executable, "-c", _SCRIPT, *labels], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}) for seed in hash_seeds]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs) and len(set(outputs)) == 1
    here = [f"{label} {i} {shifted(label, Sample('t', f'id-{i}', q), seed=7).question}"
            for label in labels for i, q in enumerate(DETERMINISM_QUESTIONS)]
    assert outputs[0].splitlines() == here


def test_word_shifts_are_identical_in_another_process_and_hash_seed():
    """Fast: the word shifts that need neither WordNet nor nlpaug (each import takes seconds); synonym lists
    are sorted (tested above) and keyboard typos are compared across processes in test_world_and_shifts."""
    _in_processes([f"{name}@{level}" for name in ("word_swap", "word_delete", "punctuation_insert")
                   for level in (1, 7)], ("2",))


@pytest.mark.slow
def test_every_text_shift_is_identical_across_processes_and_hash_seeds():
    _in_processes([f"{name}@{level}" for name in TEXT_SHIFTS for level in (1, 4, 7)], ("1", "2"))


# ------------------------------------------------------------------------------ the packaged encoder

@pytest.mark.slow
def test_the_packaged_minilm_filter_keeps_draws_above_the_threshold(monkeypatch):
    monkeypatch.setattr(paraphrase, "encode", PACKAGED_ENCODE)
    vectors = paraphrase.encode(["What is the color of the two suitcases in the image?",
                                 "what is the colour of the two suitcases in the image",
                                 "Describe the weather on the planet Mars."])
    assert float(vectors[0] @ vectors[1]) >= paraphrase.THRESHOLD > float(vectors[0] @ vectors[2])
    kept: list[tuple[str, float, int]] = []
    select = paraphrase.select
    monkeypatch.setattr(paraphrase, "select", lambda original, draws: kept.append(select(original, draws))
                        or kept[-1])
    for k, question in enumerate(QUESTIONS[:3]):
        out = shifted("synonym@4", Sample("t", f"q{k}", question)).question
        draw, score, made = kept[-1]
        assert draw == out and (score >= paraphrase.THRESHOLD or made == paraphrase.MAX_DRAWS)
        again = paraphrase.encode([question, out])
        assert abs(float(again[0] @ again[1]) - score) < 1e-3
