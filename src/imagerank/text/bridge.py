"""The offline text bridge: words to images through the backbone's ImageNet head, WordNet and MiniLM.

No network and no CLIP: a text reaches images in two ways.

- **ImageNet classes** (works on any index, labelled or not). The text picks the classes it means: by
  MiniLM similarity to each class's names and WordNet gloss, and by distance in the WordNet noun tree (a
  "ketch" is a sailing vessel, two links from "schooner"). Each image is scored by the posterior of those
  classes under the backbone's classifier head, applied to the stored vector (each class's posterior
  divided by its mean over the index to the power `PRIOR_WEIGHT`), then blended with the cosine to the mean
  of the ten best images (pseudo-relevance feedback) and smoothed over a nearest-neighbour graph of the 300
  best (label propagation). The classes are picked by the mean embedding of a few phrasings of the text
  (`QUERY_TEMPLATES`); WordNet reads a misspelt word as the noun one slip away. Stored vectors are
  L2-normalised, so the head sees them rescaled by one temperature per index, calibrated in `fit` so the
  mean top-class posterior over the index is `CALIBRATED_CONFIDENCE` (about what the heads give on the
  unnormalised features of natural photos).
- **The index's own labels.** A text whose MiniLM embedding is close to a label name (by meaning:
  "a photo of a dalmatian", "dalmatians") is answered from the labels: labelled images of that label
  first, then unlabelled ones by their posterior under a nearest-centroid classifier of the labelled
  vectors. Far from every label name, the text falls back to the ImageNet classes, with a smooth blend
  in between.

`fit` does the heavy work once (every image's class log-posteriors, label posteriors, the label-name
embeddings); `score` embeds the text, picks a few classes and labels, and reads their rows.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from imagerank.text.base import checked_text
from imagerank.text.heads import ClassifierHead, classifier_head
from imagerank.text.sentences import MODEL_NAME, encode, model_zip
from imagerank.text.wordnet import imagenet_taxonomy

CALIBRATED_CONFIDENCE = 0.5
"""Mean top-class posterior the head's temperature is set to (measured on Caltech-101 with the true
feature norms: 0.56 for MobileNetV2, 0.45 for EfficientNet-Lite0)."""
CLASSES_PER_QUERY = 30
CLASS_TEMPERATURE = 0.08
"""Softmax temperature of the class weights, in units of MiniLM cosine."""
LINK_COST = 0.5
"""Log-weight a class loses per WordNet link between it and the query's nearest noun."""
UNRELATED_LINKS = 50.0
"""Distance given to classes no query noun has a path to."""
PRIOR_WEIGHT = 0.7
"""How much of each class's mean posterior over the index is divided out (p(c | image) / p(c) ** 0.7), so a
class the head gives to many images of this collection does not swamp the rarer classes a text picks."""
FEEDBACK_IMAGES = 10
FEEDBACK_WEIGHT = 0.5
FEEDBACK_FRACTION = 20
"""Pseudo-relevance feedback: the class scores are blended (as z-scores) with the cosine of every image to
the mean of the top `FEEDBACK_IMAGES` (at most one image in `FEEDBACK_FRACTION`; none in a collection of
under 40), which pulls in images like the best matches that the head missed."""
SMOOTHED_CANDIDATES = 300
SMOOTHING_NEIGHBOURS = 10
SMOOTHING_WEIGHT = 0.5
SMOOTHING_ROUNDS = 3
"""Label propagation over the best `SMOOTHED_CANDIDATES` after feedback: each one's score becomes, in
`SMOOTHING_ROUNDS` steps, a blend of its own and the mean of its `SMOOTHING_NEIGHBOURS` nearest candidates'
(by image cosine), so a tight group of images that are mostly scored high rises together and a lone
misfit sinks. The graph is built per query among the candidates only (about 1 ms), so `fit` stays linear."""
QUERY_TEMPLATES = ("{}", "a photo of a {}", "a picture of the {}")
"""The text picks its ImageNet classes by the mean of its MiniLM embeddings in these phrasings."""
LABEL_TEMPERATURE = 0.02
"""Softmax temperature of the nearest-centroid label classifier, in units of image cosine."""
LABEL_MATCH = (0.5, 0.7)
"""MiniLM cosine between text and label name: below the first, labels are ignored; above the second, the
labels alone answer; in between, a linear blend of both ways."""
LABELS_PER_QUERY = 5
_CHUNK = 4096


def query_words(text: str) -> str:
    """Lower-case words of a text or a folder name: "Faces_easy" -> "faces easy", "carSide" -> "car side"."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)
    return " ".join(re.sub(r"[_\-./]+", " ", spaced).split()).lower()


class BridgeTextRanker:
    """The offline `TextRanker` for backbones with an ImageNet-1k classifier head."""

    def __init__(self, model: str, weights: str | Path | None = None) -> None:
        self.model = model
        self.weights = weights
        self._vectors = np.zeros((0, 0), np.float32)
        self._class_log_posteriors = np.zeros((0, 0), np.float16)
        self._class_log_priors = np.zeros(0, np.float32)
        self._label_names: list[str] = []
        self._label_embeddings = np.zeros((0, 0), np.float32)
        self._label_log_posteriors = np.zeros((0, 0), np.float32)

    def fit(self, vectors: np.ndarray, labels: Sequence[str | None]) -> BridgeTextRanker:
        """Precompute every image's ImageNet class log-posteriors and, with labels, its label posteriors."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(labels) != len(vectors):
            raise ValueError(f"{len(vectors)} vectors but {len(labels)} labels")
        head = classifier_head(self.model, self.weights)
        if vectors.shape[1] != head.weight.shape[1]:
            dim = head.weight.shape[1]
            raise ValueError(f"vectors have {vectors.shape[1]} dimensions; the {self.model} head takes {dim}")
        self._vectors = vectors
        self._class_log_posteriors = _class_log_posteriors(vectors, head)
        self._class_log_priors = _class_log_priors(self._class_log_posteriors)
        self._label_names = sorted({label for label in labels if label})
        if self._label_names:
            self._label_embeddings = encode([query_words(name) for name in self._label_names])
            self._label_log_posteriors = _label_log_posteriors(vectors, labels, self._label_names)
        return self

    def score(self, text: str) -> np.ndarray:
        """One score per fitted image, higher is closer: the log-posterior of the labels ``text`` names, or
        (far from every label name) its standardised ImageNet class score, or a blend of both in between."""
        words = query_words(checked_text(text))
        phrasings = [template.format(words) for template in QUERY_TEMPLATES]
        # with no labels, every phrasing is needed: one batch; else the first decides whether the rest are
        embedded = encode(phrasings if not self._label_names else phrasings[:1])
        blend = self._label_blend(embedded[0])
        scores = self._label_scores(embedded[0]) * blend if blend > 0 else 0.0
        if blend < 1:
            if len(embedded) < len(phrasings):
                embedded = np.concatenate([embedded, encode(phrasings[1:])])
            ensemble = embedded.sum(axis=0)
            ensemble /= np.linalg.norm(ensemble)
            scores = scores + self._class_scores(ensemble, words) * (1 - blend)
        return np.asarray(scores, dtype=np.float32)

    def _class_scores(self, query: np.ndarray, words: str) -> np.ndarray:
        links = imagenet_taxonomy().distances(words)
        affinity = class_embeddings() @ query / CLASS_TEMPERATURE - LINK_COST * np.minimum(
            links, UNRELATED_LINKS
        )
        chosen = np.argpartition(-affinity, CLASSES_PER_QUERY)[:CLASSES_PER_QUERY]
        log_posteriors = self._class_log_posteriors[chosen].astype(np.float32)
        scores = _log_mixture(
            log_posteriors - PRIOR_WEIGHT * self._class_log_priors[chosen, None], affinity[chosen]
        )
        count = min(FEEDBACK_IMAGES, len(scores) // FEEDBACK_FRACTION)
        if count < 2:
            return scores
        best = np.argpartition(-scores, count)[:count]
        feedback = self._vectors @ self._vectors[best].mean(axis=0)
        blended = (1 - FEEDBACK_WEIGHT) * _standardized(scores) + FEEDBACK_WEIGHT * _standardized(feedback)
        return _neighbour_smoothed(blended, self._vectors)

    def _label_blend(self, query: np.ndarray) -> float:
        if not self._label_names:
            return 0.0
        low, high = LABEL_MATCH
        return float(np.clip((np.max(self._label_embeddings @ query) - low) / (high - low), 0.0, 1.0))

    def _label_scores(self, query: np.ndarray) -> np.ndarray:
        similarity = self._label_embeddings @ query / CLASS_TEMPERATURE
        chosen = np.argsort(-similarity)[:LABELS_PER_QUERY]
        return _log_mixture(self._label_log_posteriors[chosen], similarity[chosen])


def _log_mixture(log_posteriors: np.ndarray, affinity: np.ndarray) -> np.ndarray:
    """log sum_c w_c p(c | image) for (classes, n) log-posteriors, w = softmax(affinity)."""
    weights = np.exp(affinity - affinity.max())
    weights /= weights.sum()
    return np.log(np.exp(log_posteriors.astype(np.float32)).T @ weights.astype(np.float32) + 1e-30)


def _neighbour_smoothed(scores: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """``scores`` with the best `SMOOTHED_CANDIDATES` smoothed over their nearest-neighbour graph; the
    others keep their order, below every candidate."""
    count = min(SMOOTHED_CANDIDATES, len(scores))
    if count <= 2 * SMOOTHING_NEIGHBOURS:
        return scores
    top = np.argpartition(-scores, count - 1)[:count]
    block = vectors[top]
    similarity = block @ block.T
    np.fill_diagonal(similarity, -np.inf)
    neighbours = np.argpartition(-similarity, SMOOTHING_NEIGHBOURS, axis=1)[:, :SMOOTHING_NEIGHBOURS]
    base = _standardized(scores[top])
    smoothed = base
    for _ in range(SMOOTHING_ROUNDS):
        smoothed = (1 - SMOOTHING_WEIGHT) * base + SMOOTHING_WEIGHT * smoothed[neighbours].mean(axis=1)
    out = scores - scores[top].min() + smoothed.min() - 1.0
    out[top] = smoothed
    return out


def _standardized(scores: np.ndarray) -> np.ndarray:
    return (scores - scores.mean()) / max(float(scores.std()), 1e-12)


def _class_log_priors(log_posteriors: np.ndarray) -> np.ndarray:
    """(1000,) log of each class's mean posterior over the fitted images."""
    sums = np.zeros(len(log_posteriors), np.float64)
    for start in range(0, log_posteriors.shape[1], _CHUNK):
        sums += np.exp(log_posteriors[:, start : start + _CHUNK].astype(np.float32)).sum(axis=1)
    return np.log(sums / max(log_posteriors.shape[1], 1) + 1e-30).astype(np.float32)


def _class_log_posteriors(vectors: np.ndarray, head: ClassifierHead) -> np.ndarray:
    """(1000, n) float16 log-posteriors of the ImageNet classes, class-major so a query reads whole rows."""
    scale = calibrated_scale(vectors, head)
    out = np.empty((head.weight.shape[0], len(vectors)), np.float16)
    for start in range(0, len(vectors), _CHUNK):
        logits = scale * (vectors[start : start + _CHUNK] @ head.weight.T) + head.bias
        out[:, start : start + _CHUNK] = _log_softmax(logits).T
    return out


def calibrated_scale(vectors: np.ndarray, head: ClassifierHead, sample: int = 2000) -> float:
    """The factor that unit vectors are multiplied by before the head, so that the mean top-class
    posterior over (up to ``sample`` of) the ``vectors`` is `CALIBRATED_CONFIDENCE`."""
    if not len(vectors):
        return 1.0
    rows = vectors[np.linspace(0, len(vectors) - 1, min(sample, len(vectors))).astype(int)]
    projected = rows @ head.weight.T
    low, high = 0.01, 1000.0
    for _ in range(40):  # the mean top posterior grows with the scale: bisect it (geometrically)
        middle = float(np.sqrt(low * high))
        confidence = np.exp(_log_softmax(middle * projected + head.bias).max(axis=1)).mean()
        low, high = (middle, high) if confidence < CALIBRATED_CONFIDENCE else (low, middle)
    return float(np.sqrt(low * high))


def _label_log_posteriors(vectors: np.ndarray, labels: Sequence[str | None], names: list[str]) -> np.ndarray:
    """(labels, n) log p(label | image): one-hot for labelled images, nearest-centroid softmax for others."""
    label_array = np.array([label or "" for label in labels], dtype=object)
    centroids = np.stack([vectors[label_array == name].mean(axis=0) for name in names])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    out = np.empty((len(names), len(vectors)), np.float32)
    for start in range(0, len(vectors), _CHUNK):
        out[:, start : start + _CHUNK] = _log_softmax(
            vectors[start : start + _CHUNK] @ centroids.T / LABEL_TEMPERATURE
        ).T
    for row, name in enumerate(names):
        labelled = np.flatnonzero(label_array == name)
        out[:, labelled] = np.log(1e-30)
        out[row, labelled] = 0.0
    return out


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return (shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))).astype(np.float32)


@functools.cache
def class_embeddings() -> np.ndarray:
    """(1000, 384) MiniLM embeddings of the ImageNet classes (names, a photo prompt, and the WordNet gloss).

    Shipped with the package for the MiniLM model of the `text` extra (`scripts/make_class_embeddings.py`);
    for another model zip they are computed once (about 10 s) and cached in the imagerank cache directory.
    """
    from imagerank.embedding.engines.export import cache_dir

    name = class_embeddings_file_name()
    for stored in (resources.files("imagerank.text") / name, cache_dir() / "text" / name):
        if stored.is_file():
            with stored.open("rb") as file:
                return np.load(file)
    embedded = computed_class_embeddings()
    cached = cache_dir() / "text" / name
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(f"{cached.stem}.partial.npy")
    np.save(partial, embedded)
    partial.replace(cached)
    return embedded


def class_embeddings_file_name() -> str:
    """Names the class embeddings by the sentence model that made them (its name and zip size)."""
    return f"imagenet-classes-{MODEL_NAME}-{model_zip().stat().st_size}.npy"


def computed_class_embeddings() -> np.ndarray:
    """The class embeddings of `class_embeddings`, computed now with MiniLM."""
    taxonomy = imagenet_taxonomy()
    names = taxonomy.class_names
    embedded = (
        encode([", ".join(synonyms) for synonyms in names])
        + encode([synonyms[0] for synonyms in names])
        + encode([f"a photo of a {synonyms[0]}" for synonyms in names])
    )
    embedded /= np.linalg.norm(embedded, axis=1, keepdims=True)
    embedded += 0.5 * encode(
        [f"{s[0]}: {gloss}" for s, gloss in zip(names, taxonomy.class_glosses, strict=True)]
    )
    embedded /= np.linalg.norm(embedded, axis=1, keepdims=True)
    return embedded.astype(np.float32)
