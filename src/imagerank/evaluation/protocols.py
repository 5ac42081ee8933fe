"""Evaluation protocols: which labelled images train a method, which are searched, which are queries.

A protocol turns the labels of a dataset into three index arrays (:class:`Split`) into the dataset's
file list. The "seed" protocol reproduces the published Caltech-101 numbers exactly: with
``numpy.random.RandomState(2021)`` it draws 20 test images per label (the rest train), then, with a
fresh ``RandomState(2021)`` over the test part, 5 queries per label (the other 15 are candidates).
The "auto" protocol is the seed protocol when every label has more than 20 images, else the same rule with
as many test images per label as the smallest label allows ("per-label").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from imagerank.embedding.decoding import scan_image_files
from imagerank.errors import BadImageError

__all__ = [
    "AUTO_PROTOCOL",
    "PROTOCOLS",
    "SEED_EXTENSIONS",
    "SEED_PROTOCOL",
    "Protocol",
    "Split",
    "drop_small_labels",
    "list_labelled_images",
    "protocol_named",
    "scan_labelled_images",
    "split_per_label",
]

SEED_EXTENSIONS = frozenset({".bmp", ".gif", ".jpeg", ".jpg", ".png"})
MIN_IMAGES_PER_LABEL = 3
"""A label needs one image to train on, one candidate and one query."""


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
        smallest = int(counts.min())
        fix = (
            f"use --test-per-label {smallest - 1} (and fewer queries per label), or --protocol auto"
            if smallest >= MIN_IMAGES_PER_LABEL
            else f"use --min-per-label {n_test + 1} to leave out the smaller labels"
        )
        raise ValueError(
            f"labels {_shown(too_small.tolist())} have at most {n_test} images, and {n_test} per label are "
            f"held out of training; {fix}"
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

    def describe(self) -> str:
        """Return the protocol's name and parameters in words, as reports and tables show them."""
        unseen = f", labels never trained on: {', '.join(self.unseen_labels)}" if self.unseen_labels else ""
        return (
            f"{self.name} ({self.n_test} images per label searched, {self.n_queries} of them queries, the "
            f"rest train; seed {self.seed}{unseen})"
        )

    def parameters(self) -> dict[str, object]:
        """Return the parameters as plain data, for JSON."""
        return {
            "name": self.name,
            "test_per_label": self.n_test,
            "queries_per_label": self.n_queries,
            "seed": self.seed,
            "unseen_labels": list(self.unseen_labels),
        }

    def fitted(self, labels: np.ndarray) -> Protocol:
        """Return the protocol to use on a dataset with these ``labels``: itself, unless it is ``auto``.

        ``auto`` is the seed protocol when every label has more than its 20 test images; otherwise the same
        rule ("per-label") holding out as many images per label as the smallest label can spare (one must
        remain to train on), a quarter of them queries.

        Raises:
            ValueError: a label has fewer than 3 images, naming the option that leaves such labels out.
        """
        if self.name != "auto":
            return self
        unique, counts = np.unique(np.asarray(labels), return_counts=True)
        if not unique.size:
            raise ValueError("no labelled images to evaluate")
        if counts.min() > SEED_PROTOCOL.n_test:
            return replace(SEED_PROTOCOL, seed=self.seed)
        tiny = unique[counts < MIN_IMAGES_PER_LABEL]
        if tiny.size:
            raise ValueError(
                f"labels {_shown(tiny.tolist())} have fewer than {MIN_IMAGES_PER_LABEL} images (one to train "
                f"on, one to search, one query); use --min-per-label {MIN_IMAGES_PER_LABEL} to leave them out"
            )
        n_test = int(counts.min()) - 1
        return replace(self, name="per-label", n_test=n_test, n_queries=max(1, n_test // 4))

    def split(self, labels: np.ndarray) -> Split:
        """Return the train / candidate / query indexes for a dataset with these ``labels``."""
        if self.name == "auto":
            return self.fitted(labels).split(labels)
        if not 0 < self.n_queries < self.n_test:
            raise ValueError(
                f"need fewer queries than test images per label, got {self.n_queries} queries of "
                f"{self.n_test}; use --queries-per-label {max(1, self.n_test // 4)}"
                + ("" if self.n_test > 1 else " --test-per-label 2")
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
AUTO_PROTOCOL = Protocol(name="auto")
PROTOCOLS = {"auto": AUTO_PROTOCOL, "seed": SEED_PROTOCOL, "per-label": SEED_PROTOCOL}
"""Protocols by name: ``seed`` is the reference split; ``per-label`` is the same rule for any labelled folder,
meant to be used with its counts and seed overridden; ``auto`` picks one of them for the folder's label
sizes (:meth:`Protocol.fitted`)."""


def protocol_named(
    name: str, n_test: int | None = None, n_queries: int | None = None, seed: int | None = None
) -> Protocol:
    """Return a protocol by name, with its per-label test and query counts and its seed optionally overridden.

    Raises:
        ValueError: an unknown name.
    """
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; use --protocol with one of {', '.join(PROTOCOLS)}")
    protocol = PROTOCOLS[name]
    if name == "auto" and n_test is None and n_queries is None:
        return replace(protocol, seed=protocol.seed if seed is None else seed)
    n_test = protocol.n_test if n_test is None else n_test
    chosen = replace(
        protocol,
        name=name,
        n_test=n_test,
        n_queries=(protocol.n_queries if n_test == protocol.n_test else max(1, n_test // 4))
        if n_queries is None
        else n_queries,
        seed=protocol.seed if seed is None else seed,
    )
    # The reference numbers belong to the reference split only: anything else is named for what it is.
    changed = (chosen.n_test, chosen.n_queries, chosen.seed) != (
        SEED_PROTOCOL.n_test,
        SEED_PROTOCOL.n_queries,
        SEED_PROTOCOL.seed,
    )
    return replace(chosen, name="per-label" if changed or name == "auto" else name)


def drop_small_labels(
    paths: Sequence[Path], labels: np.ndarray, min_per_label: int
) -> tuple[list[Path], np.ndarray]:
    """Return ``(paths, labels)`` without the labels that have fewer than ``min_per_label`` images."""
    labels = np.asarray(labels)
    unique, counts = np.unique(labels, return_counts=True)
    keep = np.isin(labels, unique[counts >= min_per_label])
    return [path for path, kept in zip(paths, keep, strict=True) if kept], labels[keep]


def _shown(names: list[str], at_most: int = 10) -> str:
    more = f" and {len(names) - at_most} more" if len(names) > at_most else ""
    return f"{names[:at_most]}{more}"


def list_labelled_images(
    root: str | Path, extensions: Sequence[str] = tuple(sorted(SEED_EXTENSIONS))
) -> tuple[list[Path], np.ndarray]:
    """Return ``(paths, labels)`` of the images in the subfolders of ``root``, labelled as `imagerank index`
    labels them: by the name of the folder an image is in, at any depth (``animals/llama/1.jpg`` is a
    ``llama``). Images directly in ``root`` have no label and are left out.

    Files are found as indexing finds them (recursively, hidden ones skipped, symlink loops ended) and
    sorted by path, keeping only files whose lower-cased suffix is in ``extensions`` (the seed protocol's
    rule: Caltech-101 gives 9,144 images, in the order of the reference protocol).
    """
    paths, labels, _ = scan_labelled_images(root, extensions)
    return paths, labels


def scan_labelled_images(
    root: str | Path, extensions: Sequence[str] = tuple(sorted(SEED_EXTENSIONS))
) -> tuple[list[Path], np.ndarray, list[BadImageError]]:
    """Return :func:`list_labelled_images` and the candidates that cannot be read at all (dangling
    symlinks, symlink loops, unreadable folders), as indexing reports them."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder of labelled images")
    root = root.absolute()
    scan = scan_image_files(root, extensions)
    paths = [path for path in scan.files if path.parent != root]
    return paths, np.asarray([path.parent.name for path in paths]), list(scan.problems)
