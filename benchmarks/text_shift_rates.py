"""How much of the question our text shifts change, against the EMI repository's released perturbed questions.

    python benchmarks/text_shift_rates.py PATH [--seeds 3] [--conditions sr_4,sr_7,KeyboardAug_1,KeyboardAug_3]

PATH is the EMI repository's `data.zip` (or the folder it unzips to). Every model-response file there carries
the prompt the model got; the clean questions are those of `llava_bench_coco_llava-v1.5-13b.jsonl` (the 90
LLaVA-Bench-COCO questions) and each perturbed split's are in `llava_bench_coco_<split>_llava-v1.5-13b.jsonl`.
Our shift runs on the same 90 clean questions with `--seeds` seeds. The data is read, never copied.

Measures, per question, then averaged:
  words  1 - (words kept in order) / (words of the clean question), by difflib's matching blocks;
  chars  Levenshtein distance / length of the clean question.
Words are whitespace-separated; for the EDA splits (sr_*) the clean question is first cleaned as EDA cleans
it (lower case, letters only), so the cleaning itself does not count as a change, only replaced words do.
Prints a Markdown table (EMI, ours as mean over seeds with the seed-to-seed range, difference in points).
"""

from __future__ import annotations

import argparse
import difflib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

OURS = {"sr_4": "synonym@4", "sr_7": "synonym@7", "KeyboardAug_1": "keyboard@1", "KeyboardAug_3": "keyboard@3"}
MODEL_FILE = "llava_bench_coco{split}_llava-v1.5-13b.jsonl"


def read_prompts(path: Path, split: str) -> dict[int, str]:
    name = MODEL_FILE.format(split=f"_{split}" if split else "")
    if path.is_dir():
        text = (path / name).read_text()
    else:
        with zipfile.ZipFile(path) as archive:
            member = next(m for m in archive.namelist() if m.endswith("/" + name) and "__MACOSX" not in m)
            text = io.TextIOWrapper(archive.open(member), encoding="utf-8").read()
    return {row["question_id"]: row["prompt"] for row in map(json.loads, text.splitlines())}


def levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def change(clean: str, perturbed: str, eda_split: bool) -> tuple[float, float]:
    from vittle_bench.shifts.eda import clean as eda_clean

    before = eda_clean(clean).split() if eda_split else clean.split()
    after = perturbed.split()
    kept = sum(block.size for block in difflib.SequenceMatcher(None, before, after, autojunk=False)
               .get_matching_blocks())
    a, b = " ".join(before), " ".join(after)
    return 1 - kept / len(before), levenshtein(a, b) / len(a)


def rates(clean: dict[int, str], perturbed: dict[int, str], eda_split: bool) -> np.ndarray:
    return np.mean([change(clean[q], perturbed[q], eda_split) for q in clean], axis=0)


def ours(clean: dict[int, str], label: str, seed: int) -> dict[int, str]:
    from vittle_bench.schema import Sample
    from vittle_bench.shifts import parse_condition, sample_rng

    condition = parse_condition(label)
    out = {}
    for q, text in clean.items():
        sample = Sample("llava_bench_coco", str(q), text)
        out[q] = condition.shift.apply(sample, sample_rng(seed, condition.label, sample.sample_id)).question
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--conditions", default=",".join(OURS))
    args = parser.parse_args()
    clean = read_prompts(args.path, "")
    print("| EMI split | ours | measure | EMI data | ours (seed range) | difference |")
    print("|---|---|---|---|---|---|")
    for split in args.conditions.split(","):
        eda_split = split.startswith("sr_")
        emi = rates(clean, read_prompts(args.path, split), eda_split)
        runs = np.array([rates(clean, ours(clean, OURS[split], seed), eda_split) for seed in range(args.seeds)])
        for k, measure in enumerate(("words", "chars")):
            mean = runs[:, k].mean()
            print(f"| {split} | {OURS[split]} | {measure} | {100 * emi[k]:.1f} % | {100 * mean:.1f} % "
                  f"({100 * runs[:, k].min():.1f}-{100 * runs[:, k].max():.1f}) | {100 * (mean - emi[k]):+.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
