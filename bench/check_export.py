#!/usr/bin/env python3
"""Loads a `crossglg export --torch` folder into the PyTorch twins of bench/torch_reference.py and
compares PyTorch's outputs on the folder's golden input with the ones crossglg stored there.

    bench/.venv/bin/python bench/check_export.py EXPORT_DIR [--tolerance 1e-4] [--json OUT]

Exit status 0 when every output matches within the tolerance (absolute, scaled by the output's
largest magnitude when that is above 1), 1 otherwise. Needs torch and numpy only: safetensors
files are read here (8-byte header length, JSON header, raw little-endian data).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64,
          "I32": np.int32, "U8": np.uint8, "U32": np.uint32}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        arr = np.frombuffer(body[start:end], dtype=DTYPES[info["dtype"]])
        out[name] = arr.reshape(info["shape"]).copy()
    return out, header.get("__metadata__", {})


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("export")
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write the comparison here")
    args = p.parse_args()

    import torch
    from torch import nn
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_reference import build_model

    torch.set_num_threads(args.threads)
    with open(os.path.join(args.export, "config.json")) as f:
        config = json.load(f)
    arch = config["architecture"]
    weights_path = os.path.join(args.export, "pytorch_model.safetensors")
    if not os.path.exists(weights_path):
        sys.exit(f"{weights_path} is missing: export with `crossglg export RUN --out DIR --torch`")
    weights, meta = read_safetensors(weights_path)
    if meta.get("names") != "torch":
        sys.exit(f"{weights_path} does not carry PyTorch names (metadata names={meta.get('names')})")
    golden, _ = read_safetensors(os.path.join(args.export, "golden.safetensors"))

    model = build_model(torch, nn, None, None, None, arch=arch)
    state = {k: torch.from_numpy(v) for k, v in weights.items()}
    result = model.load_state_dict(state, strict=False)
    unexpected = list(result.unexpected_keys)
    # BatchNorm's step counter is not a weight; crossglg does not keep one
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if unexpected or missing:
        sys.exit(f"the export does not fit the twin: unexpected {unexpected[:8]}, "
                 f"missing {missing[:8]}")
    model.eval()
    x = torch.from_numpy(golden["input"])
    text = torch.from_numpy(golden["text_local"]) if "text_local" in golden else None
    with torch.no_grad():
        logits, logits_cross, k_out, z = model(x, text)
        embedding = model.embed(x)
    ours = {"embedding": embedding, "logits": logits, "joint_importance": k_out,
            "logits_cross": logits_cross, "latent": z}
    rows, ok = [], True
    for name in ["embedding", "logits", "joint_importance", "logits_cross"]:
        if name not in golden:
            continue
        want = golden[name].astype(np.float64)
        got = ours[name]
        if got is None:
            sys.exit(f"the twin produced no {name}, which the export has")
        got = got.double().numpy()
        if got.shape != want.shape:
            sys.exit(f"{name}: the twin gives shape {got.shape}, the export {want.shape}")
        diff = float(np.abs(got - want).max())
        scale = max(1.0, float(np.abs(want).max()))
        passed = diff <= args.tolerance * scale
        ok &= passed
        rows.append({"output": name, "shape": list(want.shape), "max_abs_diff": diff,
                     "max_abs_value": float(np.abs(want).max()), "passed": passed})
    # the eval-mode latent is the embedding itself
    ok &= bool(torch.equal(ours["latent"], ours["embedding"]))
    print(f"export {args.export}: {arch['encoder']}, {len(weights)} tensors, torch {torch.__version__}")
    print(f"{'output':<18} {'shape':<14} {'max |diff|':>12} {'max |value|':>12}  result")
    for r in rows:
        print(f"{r['output']:<18} {str(r['shape']):<14} {r['max_abs_diff']:12.3e} "
              f"{r['max_abs_value']:12.3e}  {'ok' if r['passed'] else 'FAIL'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"export": args.export, "encoder": arch["encoder"],
                       "torch": torch.__version__, "tolerance": args.tolerance,
                       "rows": rows, "passed": ok}, f, indent=1)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
