"""EDA word operations (synonym replacement, random insertion, swap, deletion) as MM_Robustness runs them.

Rules follow MM_Robustness `text_perturbation/eda.py` (itself after Wei & Zou's eda_nlp) and
`text_perturbation/perturb_COCO_TP.py`; this is our own implementation of those rules, not a copy:
- cleaning (`get_only_chars`): lower-case, drop apostrophes, hyphens and tabs become spaces, every character
  other than a-z becomes a space; words are the space-separated runs;
- a level s sets alpha = 0.05 * s; synonym replacement, insertion and swap act on n = max(1, int(alpha * N))
  words of the N words, deletion drops each word with probability alpha;
- synonym replacement shuffles the distinct non-stop-words and replaces every occurrence of each of the first
  n that have a WordNet synonym (lemmas of all senses, lower-cased, letters and spaces only, the word itself
  excluded) with one drawn at random; a multi-word synonym becomes several words;
- insertion puts a synonym of a random word (10 tries) at a random position other than the end; swap
  exchanges two random positions n times (a swap is skipped when 3 draws of the second position all hit the
  first); deletion
  keeps one random word when it would delete all.

Where we differ, and why: randomness comes from the sample's numpy generator, and synonym lists are sorted
(the reference iterates Python sets, whose order changes with the process's hash seed), so results are
reproducible; a synonym that cleaning empties (WordNet's "2" for "two") is not used, since it would delete
the word instead of replacing it.

Words are (text, slot) pairs: the slot is the free-text piece of the question the word sits in (see
`protect.py`), so a perturbed question can be put back together around its protected spans. Operations
move texts between positions, never slots.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

Word = tuple[str, int]
# MM_Robustness eda.py's stop-word list: never chosen for synonym replacement.
STOP_WORDS = frozenset((
    "i", "me", "my", "myself", "we", "our", "ours", "ourselves", "you", "your", "yours", "yourself", "yourselves",
    "he", "him", "his", "himself", "she", "her", "hers", "herself", "it", "its", "itself", "they", "them", "their",
    "theirs", "themselves", "what", "which", "who", "whom", "this", "that", "these", "those", "am", "is", "are",
    "was", "were", "be", "been", "being", "have", "has", "had", "having", "do", "does", "did", "doing", "a", "an",
    "the", "and", "but", "if", "or", "because", "as", "until", "while", "of", "at", "by", "for", "with", "about",
    "against", "between", "into", "through", "during", "before", "after", "above", "below", "to", "from", "up",
    "down", "in", "out", "on", "off", "over", "under", "again", "further", "then", "once", "here", "there", "when",
    "where", "why", "how", "all", "any", "both", "each", "few", "more", "most", "other", "some", "such", "no",
    "nor", "not", "only", "own", "same", "so", "than", "too", "very", "s", "t", "can", "will", "just", "don",
    "should", "now"
))
_LETTERS = re.compile(r"[^a-z ]")


def clean(text: str) -> str:
    """EDA's `get_only_chars` without its final trimming: lower-case a-z and single spaces only."""
    text = text.replace("’", "").replace("'", "").replace("-", " ").replace("\t", " ").replace("\n", " ").lower()
    return re.sub(" +", " ", _LETTERS.sub(" ", text))


def count(alpha: float, n_words: int) -> int:
    """How many words a level acts on: EDA's max(1, int(alpha * N))."""
    return max(1, int(alpha * n_words))


def level_alpha(level: int) -> float:
    """MM_Robustness's rate for a level: `current_rate = 0.05*rate` (the same float expression)."""
    return 0.05 * level


@lru_cache(maxsize=65536)
def synonyms(word: str) -> tuple[str, ...]:
    """WordNet synonyms of `word` cleaned as EDA cleans them, sorted (see the module docstring)."""
    from nltk.corpus import wordnet

    from vittle_bench.shifts.wordnet import ensure_wordnet

    ensure_wordnet()
    found = set()
    for synset in wordnet.synsets(word):
        for lemma in synset.lemmas():
            name = lemma.name().replace("_", " ").replace("-", " ").lower()
            found.add("".join(c for c in name if c in " abcdefghijklmnopqrstuvwxyz"))
    found.discard(word)
    return tuple(sorted(s for s in found if s.strip()))


def _randint(rng: np.random.Generator, high: int) -> int:
    """Uniform integer in [0, high], like `random.randint(0, high)`."""
    return int(rng.integers(0, high + 1))


def synonym_replacement(words: list[Word], n: int, rng: np.random.Generator) -> list[Word]:
    candidates = sorted({text for text, _ in words if text not in STOP_WORDS})
    order = [candidates[i] for i in rng.permutation(len(candidates))]
    chosen: dict[str, str] = {}
    for word in order:
        options = synonyms(word)
        if options:
            chosen[word] = options[_randint(rng, len(options) - 1)]
        if len(chosen) >= n:
            break
    out: list[Word] = []
    for text, slot in words:
        out.extend((part, slot) for part in chosen.get(text, text).split())
    return out


def random_insertion(words: list[Word], n: int, rng: np.random.Generator) -> list[Word]:
    out = list(words)
    for _ in range(n):
        for _try in range(10):
            options = synonyms(out[_randint(rng, len(out) - 1)][0])
            if options:
                position = _randint(rng, len(out) - 1)
                synonym = options[_randint(rng, len(options) - 1)]
                out[position:position] = [(part, out[position][1]) for part in synonym.split()]
                break
    return out


def random_swap(words: list[Word], n: int, rng: np.random.Generator) -> list[Word]:
    texts, slots = [t for t, _ in words], [s for _, s in words]
    for _ in range(n):
        first = second = _randint(rng, len(texts) - 1)
        for _draw in range(3):
            second = _randint(rng, len(texts) - 1)
            if second != first:
                break
        if second != first:
            texts[first], texts[second] = texts[second], texts[first]
    return list(zip(texts, slots))


def random_deletion(words: list[Word], p: float, rng: np.random.Generator) -> list[Word]:
    if len(words) == 1:
        return list(words)
    kept = [w for w in words if rng.random() > p]
    return kept or [words[_randint(rng, len(words) - 1)]]
