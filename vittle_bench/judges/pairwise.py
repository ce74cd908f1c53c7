"""WildVision-Bench's pairwise LLM judge: which of two answers to the same image and prompt is better.

Protocol (WildVision-Bench, as lmms-eval's `wild_vision_bench` task runs it, itself Arena-Hard's judge): the
judge sees the image, the user prompt, the baseline model's answer as Assistant A and the evaluated model's
answer as Assistant B, writes its own answer and a comparison, and ends with one verdict label. From the
evaluated model's side the labels score [[A>>B]] -2, [[A>B]] -1, [[A=B]] 0, [[B>A]] +1, [[B>>A]] +2; the
task reports the win rate (share of +1/+2) and the mean verdict.

Where we deliberately differ from lmms-eval: a review without a readable verdict (no label, or conflicting
labels) is asked again and then counted as `judge_failed`; lmms-eval scores it as a tie, which pulls every
model towards 0. Judgments are cached like the LLaVA-Bench judge's, under their own protocol name.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from vittle_bench.judges.base import JUDGES
from vittle_bench.judges.openai import OpenAIJudge
from vittle_bench.openai_client import image_data_url
from vittle_bench.schema import Sample

SYSTEM_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to "
    "the user prompt displayed below. You will be given assistant A's answer and assistant B's answer. Your job "
    "is to evaluate which assistant's answer is better.\n\n"
    "Begin your evaluation by generating your own answer to the prompt. You must provide your answers before "
    "judging any answers.\n\n"
    "When evaluating the assistants' answers, compare both assistants' answers with your answer. You must "
    "identify and correct any mistakes or inaccurate information.\n\n"
    "Then consider if the assistant's answers are helpful, relevant, and concise. Helpful means the answer "
    "correctly responds to the prompt or follows the instructions. Note when user prompt has any ambiguity or "
    "more than one interpretation, it is more helpful and appropriate to ask for clarifications or more "
    "information from the user than providing an answer based on assumptions. Relevant means all parts of the "
    "response closely connect or are appropriate to what is being asked. Concise means the response is clear "
    "and not verbose or excessive.\n\n"
    "Then consider the creativity and novelty of the assistant's answers when needed. Finally, identify any "
    "missing important information in the assistants' answers that would be beneficial to include when "
    "responding to the user prompt.\n\n"
    "After providing your explanation, you must output only one of the following choices as your final verdict "
    "with a label:\n\n"
    "1. Assistant A is significantly better: [[A>>B]]\n"
    "2. Assistant A is slightly better: [[A>B]]\n"
    "3. Tie, relatively the same: [[A=B]]\n"
    "4. Assistant B is slightly better: [[B>A]]\n"
    "5. Assistant B is significantly better: [[B>>A]]\n\n"
    'Example output: "My final verdict is tie: [[A=B]]".')
VERDICTS = {"A>>B": -2, "A>B": -1, "A=B": 0, "B>A": 1, "B>>A": 2}  # from the evaluated model's (B's) side
_LABEL = re.compile(r"\[\[([AB<>=]+)\]\]")


def pairwise_prompt(question: str, baseline: str, answer: str) -> str:
    return (f"<|User Prompt|>\n{question}\n\n"
            f"<|The Start of Assistant A's Answer|>\n{baseline}\n<|The End of Assistant A's Answer|>\n\n"
            f"<|The Start of Assistant B's Answer|>\n{answer}\n<|The End of Assistant B's Answer|>")


def parse_verdict(review: str) -> int | None:
    """The verdict (-2..+2, evaluated model's side) of a review, or None: no label, an unknown label, or
    two different labels (a review that changes its mind is not guessed)."""
    labels = {m for m in _LABEL.findall(review) if m}
    if len(labels) != 1:
        return None
    return VERDICTS.get(labels.pop())


@JUDGES.register("pairwise")
class PairwiseJudge(OpenAIJudge):
    """`openai:MODEL` under the WildVision protocol. A Judgment's model_score is the verdict and its
    reference_score 0 (the baseline's own standing), so cached judgments and records keep one shape."""

    pairwise: ClassVar[bool] = True
    protocol: ClassVar[str] = "wildvision-pairwise/1"

    def __init__(self, model: str, temperature: float = 0.0, **kwargs: Any) -> None:
        super().__init__(model, temperature=temperature, **kwargs)  # lmms-eval asks at temperature 0

    def messages(self, sample: Sample, answer: str) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = [
            {"type": "text", "text": pairwise_prompt(sample.question, sample.answer or "", answer)}]
        content += [{"type": "image_url", "image_url": {"url": image_data_url(image)}} for image in sample.images[:1]]
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]

    def parse_review(self, review: str) -> tuple[float, float] | None:
        verdict = parse_verdict(review)
        return None if verdict is None else (0.0, float(verdict))
