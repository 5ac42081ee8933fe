"""The WordNet noun taxonomy around the 1,000 ImageNet classes: how far a query word is from each class.

ImageNet-1k classes are WordNet 3.0 noun synsets, so a word that names no class still has a place in the
same tree: a "ketch" is a sailing vessel, like the "schooner" class; a "sunflower" is a flower, like
"daisy"; "dog" is above 118 classes. The distance from a word to a class is the number of hypernym links
from the word's synset up to their nearest common ancestor and back down to the class (0: the class
itself; 1: its parent or child). The data is WordNet's, shipped as ``wordnet_nouns.json.gz`` (written by
``scripts/make_wordnet_data.py``; license in ``WORDNET-LICENSE.txt``).
"""

from __future__ import annotations

import functools
import gzip
import json
from dataclasses import dataclass
from importlib import resources

import numpy as np

NO_PATH = np.float32(np.inf)
_SUFFIXES = (("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"))
_SUFFIXES += (("men", "man"), ("ies", "y"))
"""WordNet's own rules for the base form of a plural noun (``morphy``)."""
TYPO_COST = 1.0
"""Links added to the distances of a noun reached only by respelling a query word (``respelled``)."""
_MIN_TYPO_LENGTH = 5
_MIN_ANY_SLIP_LENGTH = 7
"""Shorter words are respelled only by a doubled or swapped letter, or into a phrase: a word like "happy" has
other nouns one changed letter away ("harpy") that are no slip."""
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class ImageNetTaxonomy:
    """WordNet nouns, and for every ancestor of an ImageNet class its distance down to each class."""

    hypernyms: list[list[int]]
    lemmas: dict[str, list[int]]
    exceptions: dict[str, str]
    class_names: list[list[str]]
    """Each class's lemmas, first the usual name ("tench", "Tinca tinca")."""
    class_glosses: list[str]
    ancestor_row: dict[int, int]
    down: np.ndarray
    """(ancestors, 1000) float32: links from an ancestor down to each class, inf where it is not above it."""

    def distances(self, words: str, max_senses: int = 4, sense_cost: float = 0.35) -> np.ndarray:
        """(1000,) float32: for each class, its distance to the nearest noun sense in ``words``.

        Every run of consecutive words that is a WordNet noun (in its base form) counts, through its first
        ``max_senses`` senses; a later sense costs ``sense_cost`` links per rank, so the usual meaning
        wins ties. inf where no word has a path to the class.
        """
        best = np.full(self.down.shape[1], NO_PATH, np.float32)
        for lemma, cost in self.noun_costs(words):
            for rank, synset in enumerate(self.lemmas[lemma][:max_senses]):
                for ancestor, up in self._ancestors(synset).items():
                    row = self.ancestor_row.get(ancestor)
                    if row is not None:
                        np.minimum(best, self.down[row] + (up + rank * sense_cost + cost), out=best)
        return best

    def nouns(self, words: str) -> list[str]:
        """The WordNet nouns among ``words`` (lower case, space separated), longest phrases first; single
        letters ("a") are left out. A word of five letters or more that is no noun is read as the noun one
        typing slip away, if there is one (``respelled``: "water lilly" -> "water_lily", "lily")."""
        return [lemma for lemma, _ in self.noun_costs(words)]

    def noun_costs(self, words: str) -> list[tuple[str, float]]:
        """`nouns`, each with its extra cost in links: `TYPO_COST` for a phrase with a respelled word."""
        tokens = words.split()
        spelled = [self._respelled_in(tokens, index) for index in range(len(tokens))]
        found: dict[str, float] = {}
        for length in range(len(tokens), 0, -1):
            for start in range(len(tokens) - length + 1):
                span = slice(start, start + length)
                lemma = self.base_form("_".join(tokens[span]))
                cost = 0.0
                if lemma is None and any(spelled[span]):
                    fixed = [fix or token for fix, token in zip(spelled[span], tokens[span], strict=True)]
                    lemma, cost = self.base_form("_".join(fixed)), TYPO_COST
                if lemma is not None and len(lemma) > 1 and lemma not in found:
                    found[lemma] = cost
        return list(found.items())

    def respelled(self, word: str, context: tuple[str, ...] = ()) -> str | None:
        """The noun one typing slip (a letter left out, added, changed, or two swapped) from ``word``, for a
        word of five letters or more that is no noun itself (under seven letters: only a doubled or swapped
        letter, or a slip that makes a phrase with a ``context`` word); None when there is none. Among
        several, the one that makes a WordNet phrase with a ``context`` word comes first, then a doubled or
        undoubled letter ("lilly" -> "lily"), then two swapped letters, then the noun with the most senses."""
        if len(word) < _MIN_TYPO_LENGTH or self.base_form(word) is not None:
            return None
        best: tuple[tuple[int, int, int, str], str] | None = None
        for kind, candidate in _typing_slips(word):
            lemma = self.base_form(candidate)
            if lemma is None:
                continue
            in_phrase = any(
                phrase in self.lemmas
                for other in context
                for phrase in (f"{other}_{lemma}", f"{lemma}_{other}")
            )
            if kind == 2 and not in_phrase and len(word) < _MIN_ANY_SLIP_LENGTH:
                continue
            key = (0 if in_phrase else 1, kind, -len(self.lemmas[lemma]), candidate)
            if best is None or key < best[0]:
                best = (key, candidate)
        return None if best is None else best[1]

    def _respelled_in(self, tokens: list[str], index: int) -> str | None:
        neighbours = tuple(tokens[max(index - 1, 0) : index] + tokens[index + 1 : index + 2])
        return self.respelled(tokens[index], neighbours)

    def base_form(self, word: str) -> str | None:
        """The noun lemma of ``word`` ("mice" -> "mouse", "boxes" -> "box"), or None if it is no noun."""
        if word in self.lemmas:
            return word
        if word in self.exceptions:
            return self.exceptions[word]
        for suffix, replacement in _SUFFIXES:
            if word.endswith(suffix) and (base := word[: -len(suffix)] + replacement) in self.lemmas:
                return base
        return None

    def _ancestors(self, synset: int) -> dict[int, int]:
        """``synset`` and every synset above it, with the fewest links up to each."""
        links = {synset: 0}
        frontier = [synset]
        while frontier:
            above = []
            for node in frontier:
                for parent in self.hypernyms[node]:
                    if parent not in links:
                        links[parent] = links[node] + 1
                        above.append(parent)
            frontier = above
        return links


def _typing_slips(word: str) -> list[tuple[int, str]]:
    """Every string one slip from ``word``, with its kind: 0 a doubled letter dropped or a letter doubled,
    1 two neighbouring letters swapped, 2 any other letter dropped, added or changed."""
    slips = []
    for index in range(len(word)):
        doubled = index > 0 and word[index] == word[index - 1]
        slips.append((0 if doubled else 2, word[:index] + word[index + 1 :]))
        slips.append((0, word[:index] + word[index] + word[index:]))
        if index + 1 < len(word) and word[index] != word[index + 1]:
            slips.append((1, word[:index] + word[index + 1] + word[index] + word[index + 2 :]))
        slips.extend(
            (2, word[:index] + letter + word[index + 1 :]) for letter in _LETTERS if letter != word[index]
        )
    slips.extend(
        (2, word[:index] + letter + word[index:]) for index in range(len(word) + 1) for letter in _LETTERS
    )
    return slips


@functools.cache
def imagenet_taxonomy() -> ImageNetTaxonomy:
    """The shipped taxonomy, read once per process."""
    packaged = resources.files("imagerank.text") / "wordnet_nouns.json.gz"
    with packaged.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as stream:
        data = json.load(stream)
    hypernyms = data["hypernyms"]
    classes = data["classes"]
    partial = ImageNetTaxonomy(hypernyms, data["lemmas"], data["exceptions"], [], [], {}, np.zeros((0, 0)))
    ancestor_row: dict[int, int] = {}
    rows: list[np.ndarray] = []
    for column, entry in enumerate(classes):
        for ancestor, up in partial._ancestors(entry["synset"]).items():
            if ancestor not in ancestor_row:
                ancestor_row[ancestor] = len(rows)
                rows.append(np.full(len(classes), NO_PATH, np.float32))
            rows[ancestor_row[ancestor]][column] = up
    return ImageNetTaxonomy(
        hypernyms=hypernyms,
        lemmas=data["lemmas"],
        exceptions=data["exceptions"],
        class_names=[[name.replace("_", " ") for name in entry["lemmas"]] for entry in classes],
        class_glosses=[entry["gloss"] for entry in classes],
        ancestor_row=ancestor_row,
        down=np.stack(rows),
    )
