"""A dictionary of the spans training data labels: surface strings -> labels ranked by how
often training gave them, matched longest first. The no-model baselines and the memory hints
both answer from it."""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Iterable, Sequence

def ranked(counter: Counter) -> list[str]:
    """Labels by frequency, ties alphabetical (independent of record order)."""
    return [k for k, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))]


def first_allowed(ranked: list[str], options: Sequence[str]) -> str | None:
    """The best-ranked label among the options (all labels when there are none)."""
    if not options:
        return ranked[0] if ranked else None
    allowed = set(options)
    return next((x for x in ranked if x in allowed), None)


def is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


_END = ""  # trie key marking a complete entry (never a character)


class SpanDictionary:
    """Surface strings -> labels ranked by training frequency; longest-first matching."""

    def __init__(self, counts: dict[str, Counter]):
        self.labels = {s: ranked(c) for s, c in counts.items() if s.strip() and c}
        self.trie: dict = {}
        for s in self.labels:
            node = self.trie
            for ch in s:
                node = node.setdefault(ch, {})
            node[_END] = s

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> "SpanDictionary":
        counts: dict[str, Counter] = defaultdict(Counter)
        for text, label in pairs:
            counts[text][label] += 1
        return cls(counts)

    def __len__(self) -> int:
        return len(self.labels)

    def candidates(self, text: str, word_boundaries: bool) -> list[tuple[int, int]]:
        """Every (start, end) where a dictionary string occurs (on word boundaries if asked)."""
        n, out = len(text), []
        for i in range(n):
            if word_boundaries and i and is_word(text[i - 1]) and is_word(text[i]):
                continue
            node, j = self.trie, i
            while j < n and text[j] in node:
                node = node[text[j]]
                j += 1
                if _END in node and not (word_boundaries and j < n and is_word(text[j - 1]) and is_word(text[j])):
                    out.append((i, j))
        return out

    def match(self, text: str, language: str = "en", options: Sequence[str] = ()) -> list[tuple[int, int, str]]:
        """Non-overlapping (start, end, label): longest first, ties leftmost, in text order."""
        found = []
        for s, e in self.candidates(text, word_boundaries=language != "zh"):
            label = first_allowed(self.labels[text[s:e]], options)
            if label is not None:
                found.append((s, e, label))
        found.sort(key=lambda x: (x[0] - x[1], x[0]))
        taken = [False] * len(text)
        out = []
        for s, e, label in found:
            if not any(taken[s:e]):
                taken[s:e] = [True] * (e - s)
                out.append((s, e, label))
        return sorted(out)
