"""Evaluation protocols: which labelled images train a method, which are searched, which are queries.

A protocol turns the labels of a dataset into three index arrays (:class:`Split`) into the dataset's
file list. The "seed" protocol reproduces the published Caltech-101 numbers exactly: with
``numpy.random.RandomState(2021)`` it draws 20 test images per label (the rest train), then, with a
fresh ``RandomState(2021)`` over the test part, 5 queries per label (the other 15 are candidates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

__all__ = [
    "PROTOCOLS",
    "SEED_EXTENSIONS",
    "SEED_PROTOCOL",
    "Protocol",
    "Split",
    "list_labelled_images",
    "protocol_named",
    "split_per_label",
]

SEED_EXTENSIONS = frozenset({".bmp", ".gif", ".jpeg", ".jpg", ".png"})


@dataclass(frozen=True)
class Split:
    """Index arrays into a dataset's file list; the three parts are disjoint."""

    train: np.ndarray
    candidates: np.ndarray
    queries: np.ndarray


def split_per_label(labels: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(train, test)`` indexes into ``labels``: ``n_test`` drawn per label, the rest train.

    Labels are visited in sorted order with one ``RandomState(seed)``; test indexes keep their drawn
    order and train indexes their dataset order, as in the reference protocol.

    Raises:
        ValueError: a label has no more than ``n_test`` images, so it could not be trained on.
    """
    labels = np.asarray(labels)
    unique, counts = np.unique(labels, return_counts=True)
    too_small = unique[counts <= n_test]
    if too_small.size:
        raise ValueError(
            f"labels {too_small.tolist()} have at most {n_test} images; "
            "use fewer test images per label or drop those labels"
        )
    rng = np.random.RandomState(seed)
    train, test = [], []
    for label in unique:
        idx = np.flatnonzero(labels == label)
        drawn = rng.choice(idx, n_test, replace=False)
        test.append(drawn)
        train.append(idx[~np.isin(idx, drawn)])
    return np.concatenate(train), np.concatenate(test)


@dataclass(frozen=True)
class Protocol:
    """A per-label split: ``n_test`` images per label are searched, ``n_queries`` of them are queries.

    Labels in ``unseen_labels`` get no training images at all, to measure how a method does on
    categories it never saw labelled (their remaining images are left out).
    """

    name: str
    n_test: int = 20
    n_queries: int = 5
    seed: int = 2021
    unseen_labels: tuple[str, ...] = ()

    def split(self, labels: np.ndarray) -> Split:
        """Return the train / candidate / query indexes for a dataset with these ``labels``."""
        if not 0 < self.n_queries < self.n_test:
            raise ValueError(
                f"need 0 < n_queries < n_test, got n_queries={self.n_queries}, n_test={self.n_test}"
            )
        labels = np.asarray(labels)
        missing = sorted(set(self.unseen_labels) - set(labels.tolist()))
        if missing:
            raise ValueError(f"unseen labels {missing} are not in the dataset")
        train, test = split_per_label(labels, self.n_test, self.seed)
        # the second split's "train" part is the candidates, its "test" part the queries
        candidates, queries = split_per_label(labels[test], self.n_queries, self.seed)
        candidates, queries = test[candidates], test[queries]
        train = train[~np.isin(labels[train], list(self.unseen_labels))]
        return Split(train=train, candidates=candidates, queries=queries)


SEED_PROTOCOL = Protocol(name="seed")
PROTOCOLS = {"seed": SEED_PROTOCOL, "per-label": SEED_PROTOCOL}
"""Protocols by name: ``seed`` is the reference split; ``per-label`` is the same rule for any labelled folder,
meant to be used with its counts and seed overridden."""


def protocol_named(
    name: str, n_test: int | None = None, n_queries: int | None = None, seed: int | None = None
) -> Protocol:
    """Return a protocol by name, with its per-label test and query counts and its seed optionally overridden.

    Raises:
        ValueError: an unknown name.
    """
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    protocol = PROTOCOLS[name]
    return replace(
        protocol,
        name=name,
        n_test=protocol.n_test if n_test is None else n_test,
        n_queries=protocol.n_queries if n_queries is None else n_queries,
        seed=protocol.seed if seed is None else seed,
    )


def list_labelled_images(
    root: str | Path, extensions: Sequence[str] = tuple(sorted(SEED_EXTENSIONS))
) -> tuple[list[Path], np.ndarray]:
    """Return ``(paths, labels)`` for a folder with one subfolder per label.

    Subfolders in sorted order, files of each in sorted order, keeping only files whose lower-cased
    suffix is in ``extensions`` (the seed protocol's rule: Caltech-101 gives 9,144 images).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder of labelled images")
    keep = {extension.lower() for extension in extensions}
    paths: list[Path] = []
    labels: list[str] = []
    for folder in sorted(entry for entry in root.iterdir() if entry.is_dir()):
        files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in keep)
        paths.extend(files)
        labels.extend([folder.name] * len(files))
    return paths, np.asarray(labels)
