"""Tiny offline copies of every hub dataset our task configs read, with the hubs' exact column names and
datasets feature types (docs/datasets.md, "Hub schemas": read from the dataset cards and lmms-eval's task code).

`build_hub_fixtures(root)` writes them in the layouts a user's `--data-dir` may hold: save_to_disk
DatasetDicts (at DIR/org/name or DIR/org/name/<config>), hub-style parquet files (MMMU's data/<split>-*.parquet,
MMStar's refs/convert/parquet layout <config>/<split>/0000.parquet), and one dataset under the lmms-lab-encoder
alias (MME). A dataset with a config sits under DIR/org/name/<config>, named as on the hub, and the tests check
that this folder is what serves each task: the loader's fallback to DIR/org/name also finds parquet files below
it, which would hide a task config that names a wrong config. Images are real photographs shipped with
scikit-image (one grayscale, to exercise RGB conversion), downscaled.

The features below are written out by hand on purpose: they are the reference the loader is tested against,
not a copy of anything the package defines.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, Features, Image, Sequence, Value
from PIL import Image as PILImage

S = Value("string")

POPE_FEATURES = Features({"id": S, "question_id": S, "question": S, "answer": S, "image_source": S,
                          "image": Image(), "category": S})
COCO_FEATURES = Features({"question_id": S, "question": S, "image": Image(), "category": S, "image_id": S,
                          "answer": S, "caption": S})
WILD_FEATURES = Features({"question_id": Value("int8"), "question": S, "image": Image(), "caption": S,
                          "gpt_answer": S, "category": S, "image_id": S})
WILDER_FEATURES = Features({"question_id": Value("int64"), "Question": S, "Answer": S, "image": Image()})
WILDVISION_FEATURES = Features({"question_id": S, "instruction": S, "image": Image(), "language": S,
                                "claude-3-sonnet-20240229": S, "gpt-4o-2024-05-13": S})
SCIENCEQA_FEATURES = Features({"image": Image(), "question": S, "choices": Sequence(S), "answer": Value("int8"),
                               "hint": S, "task": S, "grade": S, "subject": S, "topic": S, "category": S,
                               "skill": S, "lecture": S, "solution": S})
MMMU_FEATURES = Features({"id": S, "question": S, "options": S, "explanation": S,
                          **{f"image_{k}": Image() for k in range(1, 8)}, "img_type": S, "answer": S,
                          "topic_difficulty": S, "question_type": S, "subfield": S})
MME_FEATURES = Features({"question_id": S, "image": Image(), "question": S, "answer": S, "category": S})
MMSTAR_FEATURES = Features({"index": Value("int64"), "question": S, "image": Image(), "answer": S, "category": S,
                            "l2_category": S, "meta_info": {"source": S, "split": S, "image_path": S}})
EMI_FEATURES = Features({"question_id": Value("int64"), "question": S, "image": Image(), "reference_answer": S})

EMI_SYNTHETIC_SPLITS = [f"llava_bench_coco{v}{t}"
                        for v in ("", "_defocus_blur_1", "_defocus_blur_3", "_defocus_blur_5", "_frost_1", "_frost_3",
                                  "_frost_5")
                        for t in ("", "_sr_4", "_sr_7", "_KeyboardAug_1", "_KeyboardAug_3")]
EMI_NATURAL_SPLITS = [f"{v}_{t}" for v in ("llava_bench_coco", "llava_bench_in_the_wild_easy",
                                           "llava_bench_in_the_wild_normal", "llava_bench_in_the_wild_hard")
                      for t in ("English", "German", "Chinese", "Korean", "Greek", "Arabic", "Hindi")]


def photo(i: int, size: tuple[int, int] = (40, 30)) -> PILImage.Image:
    """A real photograph from scikit-image's bundled data (index mod 5), downscaled; #4 is grayscale."""
    return _photo(i % 5, size).copy()


@cache
def _photo(i: int, size: tuple[int, int]) -> PILImage.Image:
    import skimage.data as data

    arrays = [data.astronaut, data.coffee, data.chelsea, data.rocket, data.camera]
    return PILImage.fromarray(arrays[i]()).resize(size)


def _rows(**columns: list[Any]) -> dict[str, list[Any]]:
    return columns


def _pope(split: str) -> dict[str, list[Any]]:
    objects = {"random": ("dog", "surfboard"), "popular": ("person", "chair"), "adversarial": ("cat", "bowl")}[split]
    return _rows(
        id=["0", "1", "2", "3"], question_id=["1", "2", "3", "4"],
        question=[f"Is there a {objects[0]} in the image?", f"Is there a {objects[1]} in the image?",
                  "Is there a cup in the image?", "Is there an umbrella in the image?"],
        answer=["yes", "no", "yes", "no"],
        image_source=["COCO_val2014_000000310196", "COCO_val2014_000000310196", "COCO_val2014_000000210789",
                      "COCO_val2014_000000210789"],
        image=[photo(0), photo(0), photo(1), photo(1)], category=[split] * 4)


def _emi(split: str) -> dict[str, list[Any]]:
    return _rows(question_id=[0, 1], question=[f"What is shown in the image? ({split})", "Describe the scene."],
                 image=[photo(2), photo(3)],
                 reference_answer=["A cat sitting on a chair.", "A rocket on a launch pad, ready for lift-off."])


def _save(path: Path, splits: dict[str, dict[str, list[Any]]], features: Features) -> None:
    DatasetDict({name: Dataset.from_dict(rows, features=features) for name, rows in splits.items()}).save_to_disk(
        str(path))


def _parquet(path: Path, rows: dict[str, list[Any]], features: Features) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(rows, features=features).to_parquet(str(path))


def fixture_rows() -> dict[tuple[str, str | None], dict[str, dict[str, list[Any]]]]:
    """(repo, config) -> split -> columns: the data, for tests that compare loaded Samples with rows."""
    none7 = {f"image_{k}": [None, None, None] for k in range(3, 8)}
    return {
        ("lmms-lab/POPE", "Full"): {s: _pope(s) for s in ("adversarial", "popular", "random")},
        ("lmms-lab/llava-bench-coco", None): {"train": _rows(
            question_id=["0", "1", "2"], question=["What is the man doing?", "Describe the image in detail.",
                                                   "What might be the purpose of this arrangement?"],
            image=[photo(0), photo(0), photo(1)], category=["conv", "detail", "complex"],
            image_id=["000000441147", "000000441147", "000000353536"],
            answer=["The man is ironing clothes.", "A man irons clothes on a board attached to a taxi.",
                    "It may be a promotional stunt."],
            caption=["A man ironing clothes on the back of a taxi.", "A man ironing clothes on the back of a taxi.",
                     "A cup of coffee on a saucer."])},
        ("lmms-lab/llava-bench-in-the-wild", None): {"train": _rows(
            question_id=[0, 1], question=["What is the name of this dish?", "Describe this photo in detail."],
            image=[photo(1), photo(2)], caption=["A bowl of ramen.", "An orange cat lying on a blanket."],
            gpt_answer=["This dish is ramen.", "The photo shows an orange tabby cat resting."],
            category=["conv", "detail"], image_id=["001", "002"])},
        ("lmms-lab/LLaVA-Bench-Wilder", None): {"test": _rows(
            question_id=[7, 8], Question=["What brand is this rocket?", "Can you read the text?"],
            Answer=["It appears to be a SpaceX Falcon 9.", "No legible text is visible."],
            image=[photo(3), photo(4)])},
        ("WildVision/wildvision-arena-data", "release_bench_0617_with_modelresponse"): {"test500": _rows(
            question_id=["a1b2", "c3d4"], instruction=["Explain this meme.", "What's in the cup?"],
            image=[photo(0), photo(1)], language=["English", "English"],
            **{"claude-3-sonnet-20240229": ["The meme shows an astronaut.", "Coffee."],
               "gpt-4o-2024-05-13": ["An astronaut portrait.", "A cup of coffee."]})},
        ("lmms-lab/ScienceQA", "ScienceQA-IMG"): {
            split: _rows(
                image=[photo(2), photo(4)],
                question=["Which animal's feet are also adapted for grabbing prey?",
                          "Which material is this rocket made of?"],
                choices=[["duck", "cat", "owl"], ["wood", "metal"]], answer=[1, 1],
                hint=["Cats have sharp claws.", ""], task=["closed choice"] * 2, grade=["grade4", "grade2"],
                subject=["natural science", "natural science"], topic=["biology", "physics"],
                category=["Adaptations", "Materials"], skill=["Animal adaptations", "Identify materials"],
                lecture=["", ""], solution=["", ""])
            for split in ("test", "validation")},
        ("lmms-lab/MMMU", None): {split: _rows(
            id=[f"{split}_Art_Theory_1", f"{split}_Computer_Science_2", f"{split}_Math_3"],
            question=["<image 1> Which art movement does this painting belong to?",
                      "Which circuit in <image 1> matches the graph?", "<image 1> What is the value of x?"],
            options=["['Cubism', 'Impressionism', 'Baroque', 'Pop art']", "['<image 2>', 'neither']", "[]"],
            explanation=["", "", ""], image_1=[photo(0), photo(1), photo(2)], image_2=[None, photo(3), None],
            **none7, img_type=["['Paintings']", "['Diagrams']", "['Geometric Shapes']"],
            answer=["B", "A", "3.5"], topic_difficulty=["Easy", "Medium", "Hard"],
            question_type=["multiple-choice", "multiple-choice", "open"],
            subfield=["Art History", "Circuits", "Geometry"])
            for split in ("validation", "dev")},
        ("lmms-lab/MME", None): {"test": _rows(
            question_id=["existence/0001.jpg", "existence/0001.jpg", "code_reasoning/0020.png",
                         "code_reasoning/0020.png"],
            image=[photo(2), photo(2), photo(4), photo(4)],
            question=["Is there a cat in this image? Please answer yes or no.",
                      "Is there a dog in this image? Please answer yes or no.",
                      "Is the output of the code 5? Please answer yes or no.",
                      "Is the output of the code 6? Please answer yes or no."],
            answer=["Yes", "No", "Yes", "No"],
            category=["existence", "existence", "code_reasoning", "code_reasoning"])},
        ("Lin-Chen/MMStar", "val"): {"val": _rows(
            index=[0, 1],
            question=["Which option describes the object in the image correctly?\nOptions: A: a cup of tea, B: a cup "
                      "of coffee, C: a glass of water, D: a bowl of soup",
                      "How many people are in the image?\nOptions: A: 1, B: 2, C: 3, D: 4"],
            image=[photo(1), photo(0)], answer=["B", "A"],
            category=["coarse perception", "fine-grained perception"],
            l2_category=["image scene and topic", "object counting"],
            meta_info=[{"source": "MMBench", "split": "val", "image_path": "images/0.jpg"},
                       {"source": "SEEDBench_IMG", "split": "val", "image_path": "images/1.jpg"}])},
        ("changdae/llavabench-shift-synthetic-v1", None): {s: _emi(s) for s in EMI_SYNTHETIC_SPLITS},
        ("changdae/llavabench-shift-natural-v1", None): {s: _emi(s) for s in EMI_NATURAL_SPLITS},
    }


FEATURES = {
    "lmms-lab/POPE": POPE_FEATURES, "lmms-lab/llava-bench-coco": COCO_FEATURES,
    "lmms-lab/llava-bench-in-the-wild": WILD_FEATURES, "lmms-lab/LLaVA-Bench-Wilder": WILDER_FEATURES,
    "WildVision/wildvision-arena-data": WILDVISION_FEATURES, "lmms-lab/ScienceQA": SCIENCEQA_FEATURES,
    "lmms-lab/MMMU": MMMU_FEATURES, "lmms-lab/MME": MME_FEATURES, "Lin-Chen/MMStar": MMSTAR_FEATURES,
    "changdae/llavabench-shift-synthetic-v1": EMI_FEATURES, "changdae/llavabench-shift-natural-v1": EMI_FEATURES,
}


def build_hub_fixtures(root: Path) -> Path:
    """Write every fixture under root (a --data-dir); returns root."""
    for (repo, config), splits in fixture_rows().items():
        features = FEATURES[repo]
        if repo == "lmms-lab/MMMU":  # the hub repo's own parquet layout
            for split, rows in splits.items():
                _parquet(root / repo / "data" / f"{split}-00000-of-00001.parquet", rows, features)
        elif repo == "Lin-Chen/MMStar":  # the hub's refs/convert/parquet layout: <config>/<split>/0000.parquet
            for split, rows in splits.items():
                _parquet(root / repo / config / split / "0000.parquet", rows, features)
        elif repo == "lmms-lab/MME":  # lmms-eval's newer id for the same dataset
            _save(root / "lmms-lab-encoder" / "MME", splits, features)
        else:
            _save(root / repo / config if config else root / repo, splits, features)
    return root
