"""The LLaVA-Bench judge rubrics ("rules"), by name, and the judge's user message.

Texts are those of LLaVA's `llava/eval/table/rule.json` (Apache-2.0, haotian-liu/LLaVA) and, for the two
long-tail sets, the Vittle repository's copy of it (deeplearning-wisc/vittle, `vittle/eval/table/rule.json`,
MIT), which adds `llava_bench_wilder` and `wildvision_bench`. A task declares its rubric (`judge_rubric` in
its YAML) the way the authors' review script picks it:

- `llava_visual`: LLaVA-Bench-COCO as `eval_gpt_review_visual.py` reviews it (rule.json's conv / detail /
  complex, one text): the context is five captions and the objects' boxes;
- `llava_bench`: LLaVA-Bench-in-the-Wild as `eval_gpt_review_bench.py` reviews it (`llava_bench_*`, one text):
  the context is the image's caption;
- `llava_bench_wilder`, `wildvision_bench` (one text): no context;
- `default`: rule.json's default, for a task without context;
- `auto`: `llava_bench` when the sample has a context, else `default` (users' own open-ended tasks).
"""

from __future__ import annotations

from vittle_bench.errors import ConfigError

_RATE = ("Please rate the helpfulness, relevance, accuracy, level of details of their responses. Each assistant "
         "receives an overall score on a scale of 1 to 10, where a higher score indicates better overall performance.\n"
         "Please first output a single line containing only two values indicating the scores for Assistant 1 and 2, "
         "respectively. The two scores are separated by a space.\n"
         "In the subsequent line, please provide a comprehensive explanation of your evaluation, avoiding any "
         "potential bias and ensuring that the order in which the responses were presented does not affect your "
         "judgment.")
_ASK = ("We would like to request your feedback on the performance of two AI assistants in response to the user "
        "question displayed above.")
_OBSERVING = " The user asks the question on observing an image."

RUBRICS = {
    "default": f"{_ASK}\n{_RATE}",
    "llava_visual": (
        f"{_ASK}{_OBSERVING} For your reference, the visual content in the image is represented with five descriptive "
        "sentences describing the same image and the bounding box coordinates of each object in the scene. These "
        "coordinates are in the form of bounding boxes, represented as (x1, y1, x2, y2) with floating numbers ranging "
        "from 0 to 1. These values correspond to the top left x, top left y, bottom right x, and bottom right y. "
        f"\n{_RATE}"),
    "llava_bench": (f"{_ASK}{_OBSERVING} For your reference, the visual content in the image is represented with a "
                    f"few sentences describing the image. \n{_RATE}"),
    "llava_bench_wilder": f"{_ASK}{_OBSERVING} \n{_RATE}",
    "wildvision_bench": f"{_ASK}{_OBSERVING} \n{_RATE}",
}
AUTO = "auto"
SYSTEM_PROMPT = "You are a helpful and precise assistant for checking the quality of the answer."


def check_rubric(name: str) -> str:
    if name != AUTO and name not in RUBRICS:
        raise ConfigError(f"unknown judge rubric {name!r}; choose from {AUTO}, {', '.join(RUBRICS)}")
    return name


def rubric_text(name: str, context: str | None) -> str:
    if name == AUTO:
        return RUBRICS["llava_bench" if context else "default"]
    return RUBRICS[check_rubric(name)]


def judge_prompt(question: str, reference: str, answer: str, context: str | None, rubric: str = AUTO) -> str:
    """The user message of one judgment, laid out as LLaVA's review scripts lay it out: the reference answer is
    Assistant 1, the model's answer Assistant 2, and `[Context]` is present only when there is one."""
    head = f"[Context]\n{context}\n\n" if context else ""
    return (f"{head}[Question]\n{question}\n\n"
            f"[Assistant 1]\n{reference}\n\n[End of Assistant 1]\n\n"
            f"[Assistant 2]\n{answer}\n\n[End of Assistant 2]\n\n"
            f"[System]\n{rubric_text(rubric, context)}\n\n")
