"""Write src/imagerank/text/wordnet_nouns.json.gz: the WordNet 3.0 noun taxonomy the offline text bridge uses.

ImageNet-1k class ids are WordNet 3.0 noun synsets (``n`` + the synset's offset), so the bridge can place a
query word in the same taxonomy as the classifier's 1,000 classes. The file holds, from WordNet's own
database files (``data.noun``, ``index.noun``, ``noun.exc``):

- ``hypernyms``: for every noun synset, the synsets it is a kind or an instance of;
- ``lemmas``: every noun lemma (lower case, ``_`` between words) with its synsets, most frequent sense first;
- ``exceptions``: irregular plurals (``mice`` -> ``mouse``);
- ``classes``: the 1,000 ImageNet classes in the classifier's order, each with its synset, lemmas and gloss.

Run once (it is shipped as package data), with WordNet 3.0 from Debian's ``wordnet-base`` package
(``apt-get install wordnet-base`` puts it in /usr/share/wordnet) and the ImageNet class list from timm:

    python scripts/make_wordnet_data.py [--wordnet-dir /usr/share/wordnet]
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

from timm.data import ImageNetInfo

OUTPUT = Path(__file__).resolve().parents[1] / "src" / "imagerank" / "text" / "wordnet_nouns.json.gz"


def read_synsets(wordnet_dir: Path) -> tuple[list[str], list[list[str]], list[list[str]], list[str]]:
    """Offsets, lemmas, hypernym offsets and glosses of every noun synset, in data.noun order."""
    offsets, lemmas, hypernyms, glosses = [], [], [], []
    for line in (wordnet_dir / "data.noun").read_text(encoding="utf-8").splitlines():
        if line.startswith("  "):  # the license header
            continue
        head, _, gloss = line.partition(" | ")
        fields = head.split()
        n_words = int(fields[3], 16)
        words = [fields[4 + 2 * i].lower() for i in range(n_words)]
        at = 4 + 2 * n_words
        n_pointers, at = int(fields[at]), at + 1
        parents = []
        for _ in range(n_pointers):
            symbol, offset, pos = fields[at : at + 3]
            at += 4
            if symbol in ("@", "@i") and pos == "n":
                parents.append(offset)
        offsets.append(fields[0])
        lemmas.append(words)
        hypernyms.append(parents)
        glosses.append(gloss.strip())
    return offsets, lemmas, hypernyms, glosses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet-dir", type=Path, default=Path("/usr/share/wordnet"))
    wordnet_dir = parser.parse_args().wordnet_dir
    offsets, lemmas, hypernyms, glosses = read_synsets(wordnet_dir)
    position = {offset: i for i, offset in enumerate(offsets)}
    senses = {}
    for line in (wordnet_dir / "index.noun").read_text(encoding="utf-8").splitlines():
        if line.startswith("  "):
            continue
        fields = line.split()
        n_senses, n_pointers = int(fields[2]), int(fields[3])
        senses[fields[0]] = [position[o] for o in fields[6 + n_pointers : 6 + n_pointers + n_senses]]
    exceptions = dict(
        line.split()[:2] for line in (wordnet_dir / "noun.exc").read_text(encoding="utf-8").splitlines()
    )
    info = ImageNetInfo()
    classes = []
    for index in range(info.num_classes()):
        wnid = info.index_to_label_name(index)
        synset = position[wnid.removeprefix("n")]
        classes.append({"wnid": wnid, "synset": synset, "lemmas": lemmas[synset], "gloss": glosses[synset]})
    data = {
        "source": "WordNet 3.0 (Princeton University) noun database; ImageNet-1k class order from timm",
        "hypernyms": [[position[o] for o in parents] for parents in hypernyms],
        "lemmas": senses,
        "exceptions": exceptions,
        "classes": classes,
    }
    with gzip.open(OUTPUT, "wt", encoding="utf-8", compresslevel=9) as stream:
        json.dump(data, stream, separators=(",", ":"))
    print(
        f"wrote {OUTPUT} ({OUTPUT.stat().st_size / 1e6:.2f} MB): {len(offsets)} synsets, {len(senses)} lemmas"
    )


if __name__ == "__main__":
    main()
