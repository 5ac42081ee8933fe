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
        for lemma in self.nouns(words):
            for rank, synset in enumerate(self.lemmas[lemma][:max_senses]):
                for ancestor, up in self._ancestors(synset).items():
                    row = self.ancestor_row.get(ancestor)
                    if row is not None:
                        np.minimum(best, self.down[row] + (up + rank * sense_cost), out=best)
        return best

    def nouns(self, words: str) -> list[str]:
        """The WordNet nouns among ``words`` (lower case, space separated), longest phrases first; single
        letters ("a") are left out."""
        tokens = words.split()
        found = []
        for length in range(len(tokens), 0, -1):
            for start in range(len(tokens) - length + 1):
                lemma = self.base_form("_".join(tokens[start : start + length]))
                if lemma is not None and len(lemma) > 1 and lemma not in found:
                    found.append(lemma)
        return found

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
