#!/usr/bin/env python3
"""Control description files for docs/results.md, "Does the text's meaning matter?".

    python3 scripts/text-controls.py DESCRIPTIONS.json OUTDIR [--seed 0]

Writes three files into OUTDIR, each a valid description file for the same
classes (check with `crossglg text validate`):

- `shuffled.json`: every class takes the whole text of another class (global description,
  per-joint descriptions and key joints), a derangement drawn with --seed, so no class keeps
  its own. Same sentences, same statistics, wrong class: what is left of a gain is what the
  text gives without its meaning for the class.
- `names.json`: every description, the global one and each joint's, is the class name alone;
  the key joints are the class's own. What is left of a gain is what the name gives, without
  the LLM's prose.
- `random.json`: every description is 16 random 8-letter words, drawn anew for each class and
  joint; the key joints are the class's own. Embedded with the hashed encoder
  (`text.encoder = "hashed"`), these are nearly orthogonal random vectors: a fixed target per
  class and joint that carries no meaning at all.

Only the texts change; ids, names, layout and format are the input's. The input is one of the
project's own description files, not third-party data.
"""

import argparse
import json
import os
import random
import sys


def derangement(n, rng):
    # Rejection sampling: a random permutation is a derangement with probability about 1/e.
    if n < 2:
        raise SystemExit("a derangement needs at least 2 classes")
    while True:
        p = list(range(n))
        rng.shuffle(p)
        if all(i != p[i] for i in range(n)):
            return p


def note(doc, text):
    # Keep the source's provenance and say what was done to it.
    prov = doc.get("provenance")
    return dict(prov, note=text) if isinstance(prov, dict) else text


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("descriptions")
    ap.add_argument("outdir")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    try:
        with open(a.descriptions, encoding="utf-8") as f:
            doc = json.load(f)
        classes = doc["classes"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"error: {a.descriptions}: not a description file ({e})")
    os.makedirs(a.outdir, exist_ok=True)

    perm = derangement(len(classes), random.Random(a.seed))
    shuffled = dict(doc, classes=[])
    for i, c in enumerate(classes):
        src = classes[perm[i]]
        shuffled["classes"].append(
            dict(c, **{"global": src["global"], "local": src["local"], "key_joints": src["key_joints"]})
        )
    shuffled["provenance"] = note(doc, f"control: texts of {a.descriptions} deranged with seed {a.seed}")

    names = dict(doc, classes=[])
    for c in classes:
        names["classes"].append(
            dict(c, **{"global": c["name"], "local": {j: c["name"] for j in c["local"]}})
        )
    names["provenance"] = note(doc, f"control: every text of {a.descriptions} replaced by the class name")

    rng = random.Random(a.seed + 1)

    def gibberish():
        letters = "abcdefghijklmnopqrstuvwxyz"
        return " ".join("".join(rng.choice(letters) for _ in range(8)) for _ in range(16))

    rand = dict(doc, classes=[])
    for c in classes:
        rand["classes"].append(
            dict(c, **{"global": gibberish(), "local": {j: gibberish() for j in c["local"]}})
        )
    rand["provenance"] = note(doc, f"control: every text of {a.descriptions} replaced by random words, seed {a.seed + 1}")

    for name, d in (("shuffled", shuffled), ("names", names), ("random", rand)):
        path = os.path.join(a.outdir, f"{name}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(d, f, indent=1, ensure_ascii=False)
        os.replace(path + ".tmp", path)
        print(path)
    print("derangement:", " ".join(f"{classes[i]['name']}<-{classes[p]['name']}" for i, p in enumerate(perm)),
          file=sys.stderr)


if __name__ == "__main__":
    main()
