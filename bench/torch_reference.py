#!/usr/bin/env python3
"""PyTorch CPU reference for `crossglg bench`: the same reference ST-GCN as
crates/crossglg-bench (src/stgcn.rs), same shapes and thread count.

Each variant runs in its own child process so its peak RSS (VmHWM) is its own.
Prints a small table and, with --json, writes one JSON object per variant
({"name", "train_ms", "infer_ms", "peak_rss_mb", "params"}) for the Rust bench to compare.
"""
import argparse
import json
import os
import subprocess
import sys
import time

# Edges of the 25-joint NTU RGB+D skeleton (1-based, as in the dataset documentation); only used to
# build realistic adjacency matrices; the timing does not depend on their values.
NTU_EDGES = [(1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
             (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
             (20, 19), (22, 23), (23, 8), (24, 25), (25, 12)]
CENTER = 21 - 1


def adjacency(torch, v=25):
    """Spatial partition (self, inward, outward), column-normalised like ST-GCN. For v != 25 the
    joints form a chain rooted at 0 (as in crossglg-bench's stgcn.rs)."""
    a = torch.zeros(3, v, v)
    hops = [None] * v  # BFS distance to the centre
    nbr = [[] for _ in range(v)]
    edges = [(i - 1, j - 1) for i, j in NTU_EDGES] if v == 25 else [(i - 1, i) for i in range(1, v)]
    center = CENTER if v == 25 else 0
    for i, j in edges:
        nbr[i].append(j)
        nbr[j].append(i)
    hops[center] = 0
    queue = [center]
    while queue:
        u = queue.pop(0)
        for w in nbr[u]:
            if hops[w] is None:
                hops[w] = hops[u] + 1
                queue.append(w)
    for i in range(v):
        a[0, i, i] = 1.0
        for j in nbr[i]:
            # edge j -> i: inward when j is farther from the centre than i
            a[1 if hops[j] > hops[i] else 2, j, i] = 1.0
    deg = a.sum(dim=(0, 1)).clamp(min=1)
    return a / deg


def build(torch, nn, num_class, k, v):
    A = adjacency(torch, v)

    class Block(nn.Module):
        def __init__(self, cin, cout, stride, residual):
            super().__init__()
            self.cout = cout
            self.gcn = nn.Conv2d(cin, k * cout, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.tcn = nn.Conv2d(cout, cout, (9, 1), (stride, 1), (4, 0), bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.register_buffer("A", A.clone())
            if not residual:
                self.res = None
            elif cin == cout and stride == 1:
                self.res = nn.Identity()
            else:
                self.res = nn.Sequential(nn.Conv2d(cin, cout, 1, (stride, 1), bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            n, _, t, v_ = x.shape
            y = self.gcn(x).view(n, k, self.cout, t, v_)
            y = torch.einsum("nkctv,kvw->nctw", y, self.A)
            y = torch.relu(self.bn1(y))
            z = self.bn2(self.tcn(y))
            if self.res is not None:
                z = z + self.res(x)
            return torch.relu(z)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            cfg = [(3, 64, 1, False), (64, 64, 1, True), (64, 64, 1, True),
                   (64, 128, 2, True), (128, 128, 1, True), (128, 256, 2, True)]
            self.blocks = nn.ModuleList([Block(*c) for c in cfg])
            self.fc = nn.Linear(256, num_class)

        def forward(self, x):  # x: (N, M, C, T, V)
            n, m, c, t, v_ = x.shape
            x = x.reshape(n * m, c, t, v_)
            for b in self.blocks:
                x = b(x)
            x = x.mean(dim=(2, 3)).view(n, m, -1).mean(dim=1)
            return self.fc(x)

    return Net()


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def child(args):
    import torch
    from torch import nn

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build(torch, nn, args.classes, 3, args.joints)
    params = sum(p.numel() for p in model.parameters())
    x = torch.randn(args.batch, args.persons, 3, args.frames, args.joints)
    y = torch.randint(0, args.classes, (args.batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    def timed(f, warmup, iters):
        for _ in range(warmup):
            f()
        ts, cs = [], []
        for _ in range(iters):
            c0 = time.process_time()
            t0 = time.perf_counter()
            f()
            ts.append((time.perf_counter() - t0) * 1e3)
            cs.append((time.process_time() - c0) * 1e3)
        ts.sort()
        cs.sort()
        return ts[len(ts) // 2], cs[len(cs) // 2]

    model.train()
    train_ms, train_cpu_ms = timed(train_step, args.warmup, args.iters)
    model.eval()

    def infer():
        with torch.no_grad():
            model(x)

    infer_ms, infer_cpu_ms = timed(infer, args.warmup, args.iters)
    out = {"name": args.child, "train_ms": train_ms, "infer_ms": infer_ms,
           "train_cpu_ms": train_cpu_ms, "infer_cpu_ms": infer_cpu_ms,
           "peak_rss_mb": peak_rss_mb(), "params": params, "torch": torch.__version__,
           "threads": torch.get_num_threads()}
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--persons", type=int, default=2)
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--joints", type=int, default=25)
    p.add_argument("--classes", type=int, default=60)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--json", help="write results here (JSON list)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    results = []
    for name in ["stgcn-ref"]:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", name] + \
              [a for a in sys.argv[1:] if not a.startswith("--json")]
        # drop the value that followed --json, if any
        if args.json and args.json in cmd:
            cmd.remove(args.json)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"variant {name} failed:\n{r.stderr}")
        results.append(json.loads(r.stdout.strip().splitlines()[-1]))
    print(f"{'variant':<12} {'train ms':>9} {'cpu ms':>9} {'infer ms':>9} {'cpu ms':>9} {'peak MB':>8} {'params':>9}")
    for r in results:
        print(f"{r['name']:<12} {r['train_ms']:9.1f} {r['train_cpu_ms']:9.1f} {r['infer_ms']:9.1f} "
              f"{r['infer_cpu_ms']:9.1f} {r['peak_rss_mb']:8.0f} {r['params']:9d}")
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=1)
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
