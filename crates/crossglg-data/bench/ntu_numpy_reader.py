"""NTU .skeleton parse throughput: a plain Python/numpy reader vs crossglg's Rust reader.

The Python reader below is the usual way this format is read in the field's tools: line by line,
float() per value, bodies followed by id, xyz into a numpy array [M, T, 25, 3] (at most 2 bodies,
the ones seen in most frames). The Rust side is `examples/ntu_parse.rs` (read_ntu on rayon),
built in the workspace's dev profile. Both read every file of the folder `--repeat` times from
disk (page cache warm) and check the same checksum (sum of all xyz).

    python3 crates/crossglg-data/bench/ntu_numpy_reader.py [--data DIR] [--repeat 200] [--threads 2]
"""
import argparse
import glob
import json
import multiprocessing
import os
import subprocess
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
WORKSPACE = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


def read_skeleton(path, max_bodies=2):
    with open(path, "r") as f:
        n_frames = int(f.readline())
        frames = []
        for _ in range(n_frames):
            n_bodies = int(f.readline())
            bodies = []
            for _ in range(n_bodies):
                info = f.readline().split()
                body_id = int(info[0])
                n_joints = int(f.readline())
                xyz = []
                for _ in range(n_joints):
                    v = [float(x) for x in f.readline().split()]
                    xyz.append(v[:3])
                bodies.append((body_id, xyz))
            frames.append(bodies)
    order, counts = [], {}
    for bodies in frames:
        for body_id, _ in bodies:
            if body_id not in counts:
                order.append(body_id)
                counts[body_id] = 0
            counts[body_id] += 1
    ranked = sorted(range(len(order)), key=lambda i: (-counts[order[i]], i))[:max_bodies]
    kept = [order[i] for i in sorted(ranked)]
    data = np.zeros((max(len(kept), 1), n_frames, 25, 3), dtype=np.float32)
    for t, bodies in enumerate(frames):
        for body_id, xyz in bodies:
            if body_id in kept:
                data[kept.index(body_id), t] = np.asarray(xyz, dtype=np.float32)
    return data


def frames_of(path):
    return read_skeleton(path).shape[1]


def main():
    ap = argparse.ArgumentParser()
    default = os.environ.get("CROSSGLG_DATA", os.path.join(WORKSPACE, "..", "shared", "data"))
    ap.add_argument("--data", default=os.path.join(default, "ntu-rgbd-samples"))
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    files = sorted(glob.glob(os.path.join(args.data, "*.skeleton")))
    if not files:
        raise SystemExit(f"no .skeleton files in {args.data} (set CROSSGLG_DATA)")
    total_bytes = sum(os.path.getsize(f) for f in files) * args.repeat
    checksum = sum(float(read_skeleton(f).astype(np.float64).sum()) for f in files)
    work = files * args.repeat

    t0 = time.perf_counter()
    frames = sum(frames_of(f) for f in work)
    py1 = time.perf_counter() - t0
    with multiprocessing.Pool(args.threads) as pool:
        t0 = time.perf_counter()
        frames_mp = sum(pool.map(frames_of, work, chunksize=16))
        pyn = time.perf_counter() - t0
    assert frames == frames_mp

    subprocess.run(["cargo", "build", "-q", "-p", "crossglg-data", "--example", "ntu_parse"],
                   cwd=WORKSPACE, check=True)
    exe = os.path.join(WORKSPACE, "target", "debug", "examples", "ntu_parse")
    out = subprocess.run([exe, args.data, str(args.repeat), str(args.threads)],
                         check=True, capture_output=True, text=True).stdout
    rust = json.loads(out)
    assert rust["frames"] == frames, (rust["frames"], frames)
    assert abs(rust["checksum"] - checksum) < 1e-3 * max(1.0, abs(checksum)), (rust["checksum"], checksum)

    mb = total_bytes / 1e6
    print(f"{len(work)} files ({len(files)} real files x {args.repeat}), {mb:.1f} MB, {frames} frames")
    print(f"python+numpy, 1 process:        {py1:8.3f} s  {mb / py1:8.1f} MB/s")
    print(f"python+numpy, {args.threads} processes:      {pyn:8.3f} s  {mb / pyn:8.1f} MB/s")
    print(f"rust read_ntu, {args.threads} threads (dev):  {rust['seconds']:8.3f} s  {rust['mb_per_s']:8.1f} MB/s")
    print(f"speed-up vs python 1 process: {py1 / rust['seconds']:.1f}x; "
          f"vs python {args.threads} processes: {pyn / rust['seconds']:.1f}x")


if __name__ == "__main__":
    main()
