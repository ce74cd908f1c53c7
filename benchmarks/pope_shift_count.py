"""Each image is shifted once per condition: POPE's three splits under one image condition, counted.

    python benchmarks/pope_shift_count.py [--images 500] [--shift gaussian_noise@3]

POPE (lmms-lab/POPE, config Full) asks 3,000 questions per split about 500 COCO images, six per image, and
the random, popular and adversarial splits ask them about the same 500 images: 9,000 questions. This writes a
dataset of exactly that shape in the hub's schema (500 distinct generated JPEGs, each row carrying its image's
encoded bytes, as the hub's parquet does), runs the three `pope_*` tasks under one image shift with a stand-in
model through `--data-dir`, and prints the run's own count from manifest.json: shifted images computed and
served from the shifted-image cache per condition. The seed of an image shift comes from the image's content,
so the goal is one computation per distinct image: 500 computed, 8,500 served.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict, Features, Image, Value, disable_progress_bars
from PIL import Image as PILImage

from vittle_bench.models.base import MODELS, Model
from vittle_bench.run_plan import RunOptions
from vittle_bench.runner import run
from vittle_bench.schema import Request

QUESTIONS_PER_IMAGE = 6  # three objects present, three absent
SPLITS = ("random", "popular", "adversarial")
S = Value("string")
POPE_FEATURES = Features({"id": S, "question_id": S, "question": S, "answer": S, "image_source": S,
                          "image": Image(), "category": S})


@MODELS.register("always-yes")
class AlwaysYes(Model):
    """Answers "Yes" at once: the run's cost is the shifting and the bookkeeping."""

    fingerprint = "always-yes-v1"

    @classmethod
    def load(cls, name: str, **model_args: object) -> AlwaysYes:
        model = cls()
        model.name = f"always-yes:{name}"
        return model

    def generate(self, requests: list[Request]) -> list[str]:
        return ["Yes"] * len(requests)


def jpeg(i: int) -> bytes:
    """A distinct 96x72 picture per index (smooth colour fields, not noise, so JPEG keeps it small)."""
    rng = np.random.default_rng(i)
    y, x = np.mgrid[0:72, 0:96] / 72.0
    channels = [np.sin(x * rng.uniform(1, 6) + y * rng.uniform(1, 6) + rng.uniform(0, 6)) for _ in range(3)]
    pixels = ((np.stack(channels, -1) + 1) * 127.5).astype(np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def write_pope(root: Path, n_images: int) -> Path:
    """DIR/lmms-lab/POPE/Full as save_to_disk writes it, three splits over the same images."""
    images = [jpeg(i) for i in range(n_images)]
    splits = {}
    for split in SPLITS:
        rows = [(i, q) for i in range(n_images) for q in range(QUESTIONS_PER_IMAGE)]
        splits[split] = Dataset.from_dict({
            "id": [str(k) for k in range(len(rows))], "question_id": [str(k + 1) for k in range(len(rows))],
            "question": [f"Is there a {split}-object-{q} in the image?" for _, q in rows],
            "answer": ["yes" if q < 3 else "no" for _, q in rows],
            "image_source": [f"COCO_val2014_{i:012d}" for i, _ in rows],
            "image": [{"bytes": images[i], "path": None} for i, _ in rows], "category": [split] * len(rows)},
            features=POPE_FEATURES)
    DatasetDict(splits).save_to_disk(str(root / "lmms-lab" / "POPE" / "Full"))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--shift", default="gaussian_noise@3")
    args = parser.parse_args()
    disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = write_pope(tmp / "data", args.images)
        start = time.perf_counter()
        summary = run(RunOptions(models=["always-yes:model"], output=tmp / "run", tasks=",".join(
            f"pope_{s}" for s in SPLITS), shifts=args.shift, data_dir=data, cache_dir=tmp / "cache", progress=False,
            batch_size=64))
        seconds = time.perf_counter() - start
        counts = json.loads((tmp / "run" / "manifest.json").read_text())["summary"]["shifted_images"]
        questions = args.images * QUESTIONS_PER_IMAGE * len(SPLITS)
        print(f"{questions:,} questions about {args.images:,} images in {len(SPLITS)} splits, "
              f"{summary.n_records:,} records, {seconds:.1f} s")
        for label, count in counts.items():
            print(f"{label:24s} computed {count['computed']:6,}  served from cache {count['served_from_cache']:6,}  "
                  f"(goal: computed {args.images:,})")


if __name__ == "__main__":
    main()
