"""Protected spans: the parts of a question a text shift must never change, found in the text itself.

Closed-form tasks carry structure inside the question: MMMU's `<image k>` placeholders, numbers (`3.5`,
`12,000`), LaTeX, line breaks, and (MMStar rows whose options cannot be split off) the option block itself.
A typo in `<image 1>` or `3.5` changes what is asked, and a perturbed option list changes the answer key, so
every text shift splits the question into free text (perturbed) and protected spans (kept byte for byte) by
the patterns below. They are detected in the question, so they hold for every loader; a loader may also set
`meta["question_stem_chars"]`, which protects everything after that many characters.

Patterns (PATTERNS, matched in this order; overlapping matches are merged):
- placeholder: an angle-bracket tag such as `<image 1>`, `<image>`, `<video>`.
- options: an option block — from "Options:" / "Choices:" followed by an `A` label to the end of the text
  (MMStar's inline list), every line that starts with an option label (`A.`, `(B)`, `C:`, `D)`), and an
  option letter in parentheses anywhere (`(A)`).
- math: `$...$`, `$$...$$`, `\\(...\\)`, `\\[...\\]`, `\\begin{env}...\\end{env}`, a LaTeX command with its
  braced or bracketed arguments (`\\frac{1}{2}`), any word holding a math operator (`x^2`, `a_1`,
  `f(x)=3x+1`, `|v|`), a short function application (`f(x)`, `sin(t)`), and an expression whose operators
  stand between spaces (`2x + 3 = 11`, `a - b`, `x < 4`).
- number: a word holding a digit with its decimal/thousands/ratio/time separators and signs (`3.5`,
  `12,000`, `-4`, `1/2`, `10:30`, `50%`, `H2O`, `3D`).
- newline: every line break (with the spaces around it), so the line structure is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PATTERNS: dict[str, re.Pattern[str]] = {
    "placeholder": re.compile(r"<\s*/?\s*[A-Za-z][\w ]{0,30}>"),
    "options": re.compile(r"(?:Options|Choices)\s*:\s*\(?A\s*[.:)][\s\S]*\Z"
                          r"|(?m:^[ \t]*(?:\([A-Z]\)|[A-Z][.:)])(?=[ \t]|$).*$)|\([A-Z]\)"),
    "math": re.compile(r"\$\$[\s\S]+?\$\$|\$[^$\n]+?\$|\\\([\s\S]+?\\\)|\\\[[\s\S]+?\\\]"
                       r"|\\begin\{(\w+\*?)\}[\s\S]*?\\end\{\1\}"
                       r"|\\[A-Za-z]+\*?(?:\s*(?:\{(?:[^{}]|\{[^{}]*\})*\}|\[[^\]\n]*\]))*"
                       r"|[^\s]*[=^_{}\\|<>+*/×÷±≤≥≠≈∑∫√][^\s]*(?<=[\w)\]}|])"
                       r"|\b[A-Za-z]{1,4}\([^()\s]{1,20}\)"
                       r"|[\w.()\[\]]+(?:\s*[=+*/×÷±≤≥≠≈^]\s*[\w.()\[\]]+|\s[-−<>]=?\s[\w.()\[\]]+)+"),
    "number": re.compile(r"(?<![\w.])[-+−]?\$?\w*\d(?:[\d,.:/]*\d)?\w*%?"),
    "newline": re.compile(r"[ \t]*(?:\r\n|\r|\n)[ \t]*"),
}


@dataclass(frozen=True)
class Piece:
    """A run of the question: free text (may be perturbed) or a protected span (kept verbatim)."""

    text: str
    protected: bool


def protected_spans(text: str, stem_chars: int | None = None) -> list[tuple[int, int]]:
    """Sorted, merged (start, end) character spans of `text` that no text shift may change."""
    spans = [(m.start(), m.end()) for pattern in PATTERNS.values() for m in pattern.finditer(text)
             if m.end() > m.start()]
    if stem_chars is not None and int(stem_chars) < len(text):
        spans.append((max(int(stem_chars), 0), len(text)))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def split_pieces(text: str, stem_chars: int | None = None) -> list[Piece]:
    """`text` as alternating free and protected pieces (empty pieces left out); joined they give `text`."""
    pieces: list[Piece] = []
    position = 0
    for start, end in protected_spans(text, stem_chars):
        if start > position:
            pieces.append(Piece(text[position:start], False))
        pieces.append(Piece(text[start:end], True))
        position = end
    if position < len(text):
        pieces.append(Piece(text[position:], False))
    return pieces
