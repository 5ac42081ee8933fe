"""Search by words: text rankers that score an index's images against a sentence.

A `TextRanker` is fitted once on an index's vectors and labels (like a ranking method) and then gives every
fitted image a score for a text, higher meaning closer. Which ranker an index uses follows from its backbone:

- ``clip:`` backbones (open_clip) answer with their own text tower (`imagerank.text.clip`);
- every other backbone goes through the offline bridge (`imagerank.text.bridge`): the text is matched to the
  ImageNet classes of the backbone's classifier head and to the index's own labels.

The interface is in `base`; `create_text_ranker` imports the ranker a backbone needs when asked for it. This
package reads vectors and labels; it never reaches into the store or the index. It may import
`imagerank.errors`, `embedding` and `ranking`.
"""

from __future__ import annotations

from pathlib import Path

from imagerank.text.base import TextRanker


def create_text_ranker(model: str, weights: str | Path | None = None) -> TextRanker:
    """The text ranker for an index built with backbone ``model`` (and its ``weights`` file, if any)."""
    if model.startswith("clip:"):
        from imagerank.text.clip import ClipTextRanker

        return ClipTextRanker(model, weights=weights)
    from imagerank.text.bridge import BridgeTextRanker

    return BridgeTextRanker(model, weights=weights)
