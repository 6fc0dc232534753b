#!/usr/bin/env python3
"""Hostile inputs against the release binary, the cases of the reliability issue: every case
must end in a clean error (exit 1, `error:` naming the file or key) or the documented
recovery, within a memory cap and a time limit; no panic, no abort, no hang, nothing lost.

    python3 scripts/hostile.py [--bin target/release/crossglg] [--model RUN] [--mem-gib 2] [--timeout 60]

Prints one row per case and the totals (cases, clean, recovered, panics, hangs, memory hits,
data lost) used in docs/reliability.md. Generates its inputs in a temporary folder; RUN is a
`crossglg demo` run (one is trained when absent)."""

import argparse
import json
import os
import pickle
import resource
import struct
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default="target/release/crossglg")
ap.add_argument("--model")
ap.add_argument("--mem-gib", type=float, default=2.0)
ap.add_argument("--timeout", type=float, default=60.0)
args = ap.parse_args()
BIN = os.path.abspath(args.bin)
T = tempfile.mkdtemp(prefix="hostile-")


def p(name):
    return os.path.join(T, name)


def write(name, data):
    with open(p(name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    return p(name)


def npy(name, shape, fill=0.1):
    n = 1
    for d in shape:
        n *= d
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % (tuple(shape),)
    hdr += " " * (118 - len(hdr)) + "\n"
    body = struct.pack("<%df" % n, *([fill] * n))
    return write(name, b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + body)


def limit():
    cap = int(args.mem_gib * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


rows = []


def run(name, cmd, expect, stdin=None, env=None, ok_exit=(1,)):
    """expect: substrings of stderr+stdout that show the case was understood."""
    e = dict(os.environ, RUST_BACKTRACE="0")
    if env:
        e.update(env)
    t0 = time.time()
    try:
        r = subprocess.run([BIN] + cmd, input=stdin, capture_output=True, timeout=args.timeout,
                           preexec_fn=limit, env=e)
        code, out = r.returncode, (r.stdout + r.stderr).decode(errors="replace")
    except subprocess.TimeoutExpired:
        code, out = None, ""
    dt = time.time() - t0
    if code is None:
        verdict = "HANG"
    elif code in (101, -6, 134) or "panicked" in out:
        verdict = "PANIC"
    elif "memory allocation" in out or code in (-9, 137):
        verdict = "MEMORY"
    elif code in ok_exit and all(x in out for x in expect):
        verdict = "clean" if code != 0 else "recovered"
    else:
        verdict = "UNCLEAR"
    first = next((l for l in out.splitlines() if l.startswith("error") or "skipped" in l), out[:100])
    rows.append((name, verdict, code, dt, first.strip()[:110]))
    print(f"{verdict:9} {code!s:>4} {dt:6.2f}s  {name:34} {first.strip()[:110]}", flush=True)


# --- a model to use ------------------------------------------------------------------------
model = args.model
if not model:
    model = p("run")
    subprocess.run([BIN, "demo", "--out", model, "--quiet", "--text-encoder", "hashed",
                    "--set", "epochs=1", "--set", "data.synthetic.samples_per_class=6",
                    "--set", "preprocess.frames=16"], check=True, capture_output=True)
files = p("files")
subprocess.run([BIN, "data", "synth", "--out", files, "--classes", "wave,kick",
                "--samples-per-class", "2"], check=True, capture_output=True)
sample = os.path.join(files, sorted(f for f in os.listdir(files) if f.endswith(".npy"))[0])

# --- NTU ------------------------------------------------------------------------------------
body = "72057594037965350 0 1 1 0 0 0 0.1 0.2 2\n"
joint = "0.1 0.2 3.0 100 200 300 400 0 0 0 1 2\n"
run("ntu: 1000-joint body", ["data", "inspect", write("j1000.skeleton", "1\n1\n" + body + "1000\n" + joint * 1000)],
    ["j1000.skeleton", "joint count is 1000"])
run("ntu: 999999 frames, 2 MB", ["data", "inspect", write("f999999.skeleton", "999999\n" + "0\n" * 999999)],
    ["f999999.skeleton", "999999 frames"])
many = "".join("1\n" + body.replace("72057594037965350", str(i)) + "25\n" + joint * 25 for i in range(20000))
run("ntu: 20000 distinct body ids", ["data", "inspect", write("ids.skeleton", "20000\n" + many)],
    ["ids.skeleton"], ok_exit=(0,))
run("ntu: NaN coordinate", ["data", "inspect", write("nan.skeleton", "1\n1\n" + body + "25\n" + joint.replace("0.1", "nan", 1) + joint * 24)],
    ["nan.skeleton"], ok_exit=(0, 1))
run("ntu: huge count", ["data", "inspect", write("count.skeleton", "99999999999999999999\n")], ["count.skeleton"])

# --- pyskl ----------------------------------------------------------------------------------
def pyskl_bytes(annotations):
    return pickle.dumps({"split": {"x": [a["frame_dir"] for a in annotations]}, "annotations": annotations}, protocol=2)


try:
    import numpy as np  # noqa: F401
    have_np = True
except ImportError:
    have_np = False
if have_np:
    import numpy as np
    kp = np.zeros((1, 4, 17, 2), dtype=np.float16) + 0.25
    sc = np.ones((1, 4, 17), dtype=np.float16)
    ann = {"frame_dir": "a", "label": 0, "keypoint": kp, "keypoint_score": sc, "total_frames": 4}
    run("pyskl: label 2**63-1", ["data", "inspect", write("l63.pkl", pyskl_bytes([dict(ann, label=2**63 - 1)])), "--layout", "coco17"],
        ["l63.pkl", "label"])
    run("pyskl: label 10**9", ["data", "inspect", write("l9.pkl", pyskl_bytes([dict(ann, label=10**9)])), "--layout", "coco17"],
        ["l9.pkl", "label"])
    big = np.zeros((1, 300, 17, 2), dtype=np.float16) + 0.25
    memo = dict(ann, keypoint=big, keypoint_score=np.ones((1, 300, 17), dtype=np.float16), total_frames=300)
    bomb = pickle.dumps({"split": {}, "annotations": [memo] * 30000}, protocol=2)
    run("pyskl: one annotation memoised 30000x", ["data", "convert", "--format", "pyskl", write("bomb.pkl", bomb),
        "--layout", "coco17", "--out", p("bomb.safetensors"), "--max-gib", "0.25"], ["read 1 of 30000"], ok_exit=(0,))
run("pickle: os.system payload", ["data", "inspect", write("evil.pkl", b"cos\nsystem\n(S'touch " + p("pwned").encode() + b"'\ntR.")],
    ["evil.pkl"])

# --- npy and manifests ------------------------------------------------------------------------
m = p("man")
os.makedirs(m)
npy("man/a.npy", (8, 25, 3))
os.mkfifo(p("man/fifo.npy"))
for name, entry in [("..", "../outside.npy"), ("absolute", "/etc/passwd"), ("device", "/dev/zero"), ("fifo", "fifo.npy")]:
    with open(os.path.join(m, "manifest.csv"), "w") as f:
        f.write("file,label\na.npy,x\n%s,x\n" % entry)
    run("manifest: " + name, ["data", "convert", "--format", "npy", m, "--layout", "ntu25", "--out", p("m.safetensors"), "--strict"],
        ["manifest.csv" if name != "fifo" else "fifo.npy"])
run("npy: 16 channels to a 3-channel model", ["embed", "--model", model, "--out", p("e.json"), npy("c16.npy", (10, 25, 16))],
    ["c16.npy", "16 values per joint"])
run("npy: shape 1e12", ["data", "inspect", write("shape.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", 118) + ("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 25, 3), }".ljust(117) + "\n").encode())],
    ["shape.npy"])
run("all-zero sequence enrolled", ["enroll", "--model", model, "--gallery", p("z.gallery"), "--name", "z", npy("zero.npy", (10, 25, 3), 0.0)],
    ["zero.npy", "every coordinate is zero"])

# --- text -----------------------------------------------------------------------------------
desc = json.load(open(os.path.join(os.path.dirname(__file__), "..", "crates/crossglg-text/descriptions/msr-action3d.json")))
run("description: layout /etc/passwd", ["text", "validate", write("d1.json", json.dumps(dict(desc, layout="/etc/passwd")))],
    ["d1.json", "inside the folder"])
run("description: UTF-8 BOM", ["text", "validate", write("bom.json", b"\xef\xbb\xbf" + json.dumps(desc).encode())],
    ["valid"], ok_exit=(0,))

# --- config and training ----------------------------------------------------------------------
demo_cfg = os.path.join(os.path.dirname(__file__), "..", "configs/demo.toml")
run("config: optim.lr=nan", ["train", "-c", demo_cfg, "--set", "optim.lr=nan", "--out", p("nan-run")], ["optim.lr"])
run("config: /dev/zero", ["train", "-c", "/dev/zero"], ["/dev/zero", "not a regular file"])
run("resume: changed seed", ["train", "-c", os.path.join(model, "config.toml"), "--out", model, "--resume", "--set", "seed=99"],
    ["seed", "--force"])

# --- galleries --------------------------------------------------------------------------------
g = p("g.gallery")
subprocess.run([BIN, "enroll", "--model", model, "--gallery", g, "--name", "wave", sample], check=True, capture_output=True)
other = p("other-run")
subprocess.run([BIN, "demo", "--out", other, "--quiet", "--text-encoder", "hashed", "--set", "epochs=1", "--set", "seed=5",
                "--set", "data.synthetic.samples_per_class=6", "--set", "preprocess.frames=16"], check=True, capture_output=True)
run("gallery of another model", ["recognize", "--model", other, "--gallery", g, sample], ["g.gallery", "not by this one"])
run("gallery: not a safetensors file", ["recognize", "--model", model, "--gallery", write("bad.gallery", "nope"), sample], ["bad.gallery"])

# --- stream -----------------------------------------------------------------------------------
frame = json.dumps({"joints": [[0.1 * v, 0.2, 0.3] for v in range(25)]}) + "\n"
run("stream: --window 1e9", ["stream", "--model", model, "--gallery", g, "--window", "1000000000"], ["window"], stdin=frame.encode())
run("stream: JSON read as CSV", ["stream", "--model", model, "--gallery", g, "--format", "csv", "--window", "4", "--hop", "2"],
    ["no frame could be read"], stdin=(frame * 8).encode())
run("stream: bad line in the middle", ["stream", "--model", model, "--gallery", g, "--window", "4", "--hop", "2"],
    ["skipped input line 5", "1 bad lines skipped"], stdin=(frame * 4 + "{oops\n" + frame * 4).encode(), ok_exit=(0,))
run("stream: 300 MB line", ["stream", "--model", model, "--gallery", g, "--window", "4", "--hop", "2"],
    ["longer than", "1 bad lines skipped"], stdin=(frame * 4 + "x" * (300 << 20) + "\n" + frame * 4).encode(), ok_exit=(0,))

# --- concurrency ------------------------------------------------------------------------------
cg = p("c.gallery")
procs = [subprocess.Popen([BIN, "enroll", "--model", model, "--gallery", cg, "--name", "c%d" % i, sample],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(20)]
codes = [q.wait() for q in procs]
# the class count, from the gallery's JSON header
with open(cg, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
classes = json.loads(header["__metadata__"]["crossglg.gallery"])["classes"]
lost = 20 - len(classes)
rows.append(("20 concurrent enrolls", "clean" if lost == 0 and not any(codes) else "LOST", 0, 0.0, f"{len(classes)} of 20 classes"))
print(f"{rows[-1][1]:9}    0   -      20 concurrent enrolls              {len(classes)} of 20 classes")

# --- totals -----------------------------------------------------------------------------------
count = {}
for r in rows:
    count[r[1]] = count.get(r[1], 0) + 1
print()
print(f"{len(rows)} cases: " + ", ".join(f"{v} {k}" for k, v in sorted(count.items())))
print(f"memory cap {args.mem_gib} GiB of address space, time limit {args.timeout:.0f} s per case, folder {T}")
