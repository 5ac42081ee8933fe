"""Write the MiniLM embeddings of the 1,000 ImageNet classes that the offline text bridge ships with.

Without the shipped file the first text search on a machine computes them (about 10 s); run this again when
the `text` extra's sentence model or `wordnet_nouns.json.gz` changes:

    python scripts/make_class_embeddings.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imagerank.text.bridge import class_embeddings_file_name, computed_class_embeddings

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "imagerank" / "text"


def main() -> None:
    for old in PACKAGE.glob("imagenet-classes-*.npy"):
        old.unlink()
    target = PACKAGE / class_embeddings_file_name()
    np.save(target, computed_class_embeddings())
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
