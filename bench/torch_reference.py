#!/usr/bin/env python3
"""PyTorch CPU reference for `crossglg bench`, same shapes and thread count as the Rust side.

Variants (`--variant`, repeatable; default stgcn-ref):
  stgcn-ref         the 6-block reference ST-GCN of crates/crossglg-bench (src/stgcn.rs); the
                    Rust names stgcn-ref-{plain,fused}[-tuned] select it too
  model-stgcn, model-ctrgcn, model-infogcn, crossglg-infogcn
                    twins of the crossglg-model encoders (standard 10-block presets) and of the
                    full CrossGLG training graph, as crates/crossglg-bench/src/models.rs runs them:
                    training step = forward + that variant's loss + backward + SGD (momentum 0.9,
                    lr 0.01); inference = CrossGlg::embed in eval mode

Each variant runs in its own child process so its peak RSS (VmHWM) is its own.
--device cuda runs the model variants on the GPU (times taken after torch.cuda.synchronize; the
peak GPU memory PyTorch allocated is reported as peak_gpu_mb), as `crossglg bench --device cuda`.
Prints a small table and, with --json, writes one JSON object per variant
({"name", "train_ms", "infer_ms", "peak_rss_mb", "params"}) for the Rust bench to compare.
"""
import argparse
import json
import os
import subprocess
import sys
import time

def _ntu25():
    """Edges (0-based) and centre of the 25-joint NTU RGB+D skeleton, read from the layout file the
    Rust side uses (crates/crossglg-data/layouts/ntu25.toml), so both build the same graph."""
    import tomllib
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "crates/crossglg-data/layouts/ntu25.toml"
    with open(path, "rb") as f:
        layout = tomllib.load(f)
    index = {name: i for i, name in enumerate(layout["joints"])}
    return [(index[a], index[b]) for a, b in layout["edges"]], index[layout["center"]]


NTU_EDGES, CENTER = _ntu25()


def adjacency(torch, v=25):
    """Spatial partition (self, inward, outward), column-normalised like ST-GCN. For v != 25 the
    joints form a chain rooted at 0 (as in crossglg-bench's stgcn.rs)."""
    a = torch.zeros(3, v, v)
    hops = [None] * v  # BFS distance to the centre
    nbr = [[] for _ in range(v)]
    edges = NTU_EDGES if v == 25 else [(i - 1, i) for i in range(1, v)]
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


# ---------------------------------------------------------------------------------------------
# Twins of the crossglg-model encoders (crates/crossglg-model), variants model-stgcn,
# model-ctrgcn, model-infogcn and crossglg-infogcn of crates/crossglg-bench/src/models.rs:
# `CrossGlgConfig::standard(kind, classes)` with the bench's persons, the NTU 25-joint graph.
# Written in the style of the public reference code (yysijie/st-gcn, Uason-Chen/CTR-GCN,
# stnoah1/infogcn); where the Rust crate differs from those, the Rust structure is followed
# (noted inline). Parameter counts equal the Rust side's.
# ---------------------------------------------------------------------------------------------

MODEL_VARIANTS = ["model-stgcn", "model-ctrgcn", "model-infogcn", "crossglg-infogcn"]
STANDARD_BLOCKS = [(64, 1), (64, 1), (64, 1), (64, 1), (128, 2), (128, 1), (128, 1),
                   (256, 2), (256, 1), (256, 1)]  # encoder::standard_blocks(64)


def ntu_partitions(torch):
    """crossglg-model's Graph::spatial_partitions for the NTU skeleton (ntu25.toml's centre)."""
    return spatial_partitions(torch, NTU_EDGES, CENTER, 25)


def layout_partitions(torch, layout):
    """spatial_partitions of a layout TOML already parsed (an export's layout.toml)."""
    index = {name: i for i, name in enumerate(layout["joints"])}
    edges = [(index[a], index[b]) for a, b in layout["edges"]]
    return spatial_partitions(torch, edges, index[layout["center"]], len(index))


def spatial_partitions(torch, edges, center, v):
    """crossglg-model's Graph::spatial_partitions:
    (3, V, V) with A[k][u][v] = joint u aggregates from joint v, [I, norm(inward),
    norm(outward)], every column divided by its sum (CTR-GCN's get_spatial_graph). Also returns
    InfoGCN's A_outward_binary."""
    nbr = [[] for _ in range(v)]
    for i, j in edges:
        nbr[i].append(j)
        nbr[j].append(i)
    hops = [None] * v
    hops[center] = 0
    queue = [center]
    while queue:
        u = queue.pop(0)
        for w in nbr[u]:
            if hops[w] is None:
                hops[w] = hops[u] + 1
                queue.append(w)
    inw = torch.zeros(v, v)
    outw = torch.zeros(v, v)
    for a, b in edges:
        far, near = (a, b) if hops[a] >= hops[b] else (b, a)
        inw[near, far] = 1.0
        outw[far, near] = 1.0

    def norm(m):
        return m / m.sum(0, keepdim=True).clamp(min=1)

    return torch.stack([torch.eye(v), norm(inw), norm(outw)]), inw.clone()


def default_arch(name, num_class, persons):
    """The architecture of a bench variant, in the form of `crossglg export`'s config.json
    (`architecture`): CrossGlgConfig::standard on the NTU graph."""
    kind = {"model-stgcn": "st_gcn", "model-ctrgcn": "ctr_gcn", "model-infogcn": "info_gcn",
            "crossglg-infogcn": "info_gcn"}[name]
    guided = name == "crossglg-infogcn"
    c_out = STANDARD_BLOCKS[-1][0]
    return {
        "encoder": kind, "in_channels": 3, "persons": persons, "joints": 25, "partitions": 3,
        "blocks": [list(b) for b in STANDARD_BLOCKS],
        "temporal_kernel": 9 if kind == "st_gcn" else 5, "dilations": [1, 2],
        "edge_importance": kind == "st_gcn", "attention_heads": 3, "input_transform_power": 1,
        "jid": {"after_block": 5, "hidden": 256, "reweight": "multiplicative"} if guided else None,
        "info_bottleneck": kind == "info_gcn",
        "cross": {"text_dim": 384, "dim": 256, "heads": 4, "depth": 2, "mlp_ratio": 2,
                  "text_residual": True} if guided else None,
        "classifier": "linear", "classifier_hidden": c_out, "classifier_scale": 16.0,
        "num_classes": num_class, "embedding_dim": c_out,
    }


def build_model(torch, nn, name, num_class, persons, arch=None, graph=None, align=None):
    """A bench variant's twin, or (with `arch`, the `architecture` of an export's config.json)
    the twin of any exported model. With `arch` the graph buffers and topologies are zeros until
    the export's weights are loaded (they travel in pytorch_model.safetensors), unless `graph`
    gives (A, A_outward_binary) (`layout_partitions`), as a twin trained from scratch needs.
    `align` = (text_dim, dim) builds the text-target branch of an arch with `text_align`."""
    import math

    import torch.nn.functional as F

    if arch is None:
        arch = default_arch(name, num_class, persons)
        A, A_outward_binary = ntu_partitions(torch)
    elif graph is not None:
        A, A_outward_binary = graph
    else:
        v_, k_ = arch["joints"], arch["partitions"]
        A, A_outward_binary = torch.zeros(k_, v_, v_), torch.zeros(v_, v_)
    num_class, persons = arch["num_classes"], arch["persons"]
    K, V = A.shape[0], A.shape[1]
    BLOCKS = [tuple(b) for b in arch["blocks"]]
    C_IN = arch["in_channels"]
    TK = arch["temporal_kernel"]
    DILATIONS = tuple(arch["dilations"])

    def conv_init(conv):  # CTR-GCN's conv_init = the Rust CONV_INIT (Kaiming normal, fan-out)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out")
        if conv.bias is not None:
            nn.init.constant_(conv.bias, 0)

    def bn_init(bn, scale):
        nn.init.constant_(bn.weight, scale)
        nn.init.constant_(bn.bias, 0)

    def conv(cin, cout, kernel=1, stride=1, dilation=1):
        pad = (kernel + (kernel - 1) * (dilation - 1) - 1) // 2
        c = nn.Conv2d(cin, cout, (kernel, 1), (stride, 1), (pad, 0), (dilation, 1))
        conv_init(c)
        return c

    class UnitTcn(nn.Module):  # CTR-GCN's unit_tcn: conv (k, 1) + BN
        def __init__(self, cin, cout, kernel=1, stride=1, dilation=1):
            super().__init__()
            self.conv = conv(cin, cout, kernel, stride, dilation)
            self.bn = nn.BatchNorm2d(cout)

        def forward(self, x):
            return self.bn(self.conv(x))

    class MultiScaleTemporalConv(nn.Module):
        """CTR-GCN's MultiScale_TemporalConv(residual=False): one branch per dilation, a max-pool
        branch and a strided 1x1 branch, concatenated."""

        def __init__(self, cin, cout, kernel, stride, dilations=DILATIONS):
            super().__init__()
            bc = cout // (len(dilations) + 2)
            self.branches = nn.ModuleList([
                nn.Sequential(conv(cin, bc), nn.BatchNorm2d(bc), nn.ReLU(inplace=True),
                              UnitTcn(bc, bc, kernel, stride, d)) for d in dilations])
            self.branches.append(nn.Sequential(
                conv(cin, bc), nn.BatchNorm2d(bc), nn.ReLU(inplace=True),
                nn.MaxPool2d((3, 1), (stride, 1), (1, 0)), nn.BatchNorm2d(bc)))
            self.branches.append(nn.Sequential(conv(cin, bc, 1, stride), nn.BatchNorm2d(bc)))

        def forward(self, x):
            return torch.cat([b(x) for b in self.branches], dim=1)

    def residual(enabled, cin, cout, stride):
        if not enabled:
            return None
        if cin == cout and stride == 1:
            return nn.Identity()
        return UnitTcn(cin, cout, 1, stride)

    # ---- ST-GCN (crossglg-model stgcn.rs, after yysijie/st-gcn net/st_gcn.py) ----
    class StGcnBlock(nn.Module):
        def __init__(self, cin, cout, stride, res):
            super().__init__()
            self.gcn = nn.Conv2d(cin, K * cout, 1)  # ConvTemporalGraphical.conv
            conv_init(self.gcn)
            self.tcn = nn.Sequential(nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                                     conv(cout, cout, TK, stride), nn.BatchNorm2d(cout))
            self.residual = residual(res, cin, cout, stride)
            self.edge_importance = nn.Parameter(torch.ones(K, V, V))
            # st-gcn stores A source-first: einsum('nkctv,kvw->nctw')
            self.register_buffer("A", A.transpose(1, 2).contiguous())

        def forward(self, x, joint_weight=None):
            n, _, t, v = x.shape
            y = self.gcn(x).view(n, K, -1, t, v)
            y = torch.einsum("nkctv,kvw->nctw", y, self.A * self.edge_importance)
            if joint_weight is not None:
                y = y * joint_weight
            y = self.tcn(y)
            if self.residual is not None:
                y = y + self.residual(x)
            return torch.relu(y)

    class StGcn(nn.Module):
        def __init__(self):
            super().__init__()
            self.data_bn = nn.BatchNorm1d(C_IN * V)
            layers, cin = [], C_IN
            for i, (cout, stride) in enumerate(BLOCKS):
                layers.append(StGcnBlock(cin, cout, stride, i > 0))
                cin = cout
            self.blocks = nn.ModuleList(layers)

        def stem(self, x):  # (N, C, T, V, M) -> (N*M, C, T, V)
            n, c, t, v, m = x.shape
            x = x.permute(0, 4, 3, 1, 2).contiguous().view(n * m, v * c, t)
            x = self.data_bn(x)
            return x.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).contiguous().view(n * m, c, t, v)

    # ---- CTR-GCN (crossglg-model ctrgcn.rs, after Uason-Chen/CTR-GCN model/ctrgcn.py) ----
    class CTRGC(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            rel = 8 if cin in (3, 9) else max(cin // 8, 1)
            self.conv1 = conv(cin, rel)
            self.conv2 = conv(cin, rel)
            self.conv3 = conv(cin, cout)
            self.conv4 = conv(rel, cout)

        def forward(self, x, A, alpha):
            x1, x2, x3 = self.conv1(x).mean(-2), self.conv2(x).mean(-2), self.conv3(x)
            x1 = torch.tanh(x1.unsqueeze(-1) - x2.unsqueeze(-2))
            x1 = self.conv4(x1) * alpha + A.unsqueeze(0).unsqueeze(0)
            return torch.einsum("ncuv,nctv->nctu", x1, x3)

    class UnitGcn(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.convs = nn.ModuleList([CTRGC(cin, cout) for _ in range(K)])
            # Rust stores PA as A + pa_delta (delta a parameter initialised to 0): same count.
            self.PA = nn.Parameter(A.clone())
            self.alpha = nn.Parameter(torch.zeros(1))
            self.bn = nn.BatchNorm2d(cout)
            bn_init(self.bn, 1e-6)
            self.down = UnitTcn(cin, cout) if cin != cout else nn.Identity()

        def forward(self, x):
            y = None
            for i in range(K):
                z = self.convs[i](x, self.PA[i], self.alpha)
                y = z + y if y is not None else z
            return torch.relu(self.bn(y) + self.down(x))

    class TcnGcnUnit(nn.Module):  # CTR-GCN's TCN_GCN_unit, InfoGCN's EncodingBlock
        def __init__(self, gcn, cin, cout, stride, res):
            super().__init__()
            self.gcn1 = gcn
            self.tcn1 = MultiScaleTemporalConv(cout, cout, TK, stride)
            self.residual = residual(res, cin, cout, stride)

        def forward(self, x, joint_weight=None):
            y = self.gcn1(x)
            if joint_weight is not None:
                y = y * joint_weight
            y = self.tcn1(y)
            if self.residual is not None:
                y = y + self.residual(x)
            return torch.relu(y)

    class CtrGcn(nn.Module):
        def __init__(self):
            super().__init__()
            self.data_bn = nn.BatchNorm1d(persons * V * C_IN)
            layers, cin = [], C_IN
            for i, (cout, stride) in enumerate(BLOCKS):
                layers.append(TcnGcnUnit(UnitGcn(cin, cout), cin, cout, stride, i > 0))
                cin = cout
            self.blocks = nn.ModuleList(layers)

        def stem(self, x):
            n, c, t, v, m = x.shape
            x = x.permute(0, 4, 3, 1, 2).contiguous().view(n, m * v * c, t)
            x = self.data_bn(x)
            return x.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).contiguous().view(n * m, c, t, v)

    # ---- InfoGCN (crossglg-model infogcn.rs, after stnoah1/infogcn model/infogcn.py, modules.py)
    heads = arch["attention_heads"]

    class SelfAttention(nn.Module):
        def __init__(self, cin, hidden, n_heads):
            super().__init__()
            self.scale, self.n_heads = hidden ** -0.5, n_heads
            self.to_qk = nn.Linear(cin, 2 * hidden * n_heads)
            self.ln = nn.LayerNorm(cin)

        def forward(self, x):  # (N, C, T, V) -> (N*T, H, V, V)
            n, c, t, v = x.shape
            y = self.to_qk(self.ln(x.permute(0, 2, 3, 1).contiguous()))
            q, k = (z.reshape(n * t, v, self.n_heads, -1).transpose(1, 2) for z in y.chunk(2, -1))
            return (torch.einsum("bhid,bhjd->bhij", q, k) * self.scale).softmax(dim=-1)

    class SAGC(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.shared_topology = nn.Parameter(torch.eye(V).repeat(heads, 1, 1))
            self.conv_d = nn.ModuleList([conv(cin, cout) for _ in range(heads)])
            self.down = UnitTcn(cin, cout) if cin != cout else nn.Identity()
            self.bn = nn.BatchNorm2d(cout)
            bn_init(self.bn, 1e-6)
            self.attn = SelfAttention(cin, max(cin // 8, 1), heads)

        def forward(self, x):
            n, c, t, v = x.shape
            A_ = self.attn(x) * self.shared_topology.unsqueeze(0)
            feature = x.permute(0, 2, 3, 1).reshape(n * t, v, c)
            out = None
            for h in range(heads):
                z = (A_[:, h] @ feature).view(n, t, v, c).permute(0, 3, 1, 2).contiguous()
                z = self.conv_d[h](z)
                out = z + out if out is not None else z
            return torch.relu(self.bn(out) + self.down(x))

    class InfoGcn(nn.Module):
        def __init__(self):
            super().__init__()
            c0 = BLOCKS[0][0]
            self.register_buffer("A_vector", torch.eye(V) - A_outward_binary)  # k = 1
            self.to_joint_embedding = nn.Linear(C_IN, c0)
            self.pos_embedding = nn.Parameter(torch.randn(1, V, c0))
            self.data_bn = nn.BatchNorm1d(persons * V * c0)
            layers, cin = [], c0
            for cout, stride in BLOCKS:
                layers.append(TcnGcnUnit(SAGC(cin, cout), cin, cout, stride, True))
                cin = cout
            self.blocks = nn.ModuleList(layers)

        def stem(self, x):
            n, c, t, v, m = x.shape
            x = x.permute(0, 4, 2, 3, 1).reshape(n * m * t, v, c)
            x = self.A_vector.expand(n * m * t, -1, -1) @ x
            x = self.to_joint_embedding(x) + self.pos_embedding
            c0 = x.shape[-1]
            x = x.view(n, m, t, v, c0).permute(0, 1, 3, 4, 2).reshape(n, m * v * c0, t)
            x = self.data_bn(x)
            return x.view(n, m, v, c0, t).permute(0, 1, 3, 4, 2).reshape(n * m, c0, t, v)

    class InfoBottleneck(nn.Module):  # InfoGCN's fc -> ReLU -> (fc_mu, fc_logvar) readout
        def __init__(self, dim, noise_ratio=0.1, gain=3.0):
            super().__init__()
            self.fc, self.fc_mu, self.fc_logvar = (nn.Linear(dim, dim) for _ in range(3))
            self.noise_ratio = noise_ratio
            self.register_buffer("z_prior", nn.init.orthogonal_(torch.empty(num_class, dim), gain))

        def forward(self, g):
            h = torch.relu(self.fc(g))
            mu, logvar = self.fc_mu(h), self.fc_logvar(h)
            if not self.training:
                return mu
            std = torch.clamp((logvar * self.noise_ratio).exp(), max=100)
            return mu + torch.randn_like(std) * std

        def mmd_loss(self, z, y):  # InfoGCN's get_mmd_loss
            present = torch.unique(y)
            z_mean = torch.stack([z[y == c].mean(dim=0) for c in present.tolist()])
            return F.mse_loss(z_mean, self.z_prior[present]), torch.linalg.vector_norm(z.mean(0))

    # ---- CrossGLG heads (crossglg-model heads.rs) ----
    class Jid(nn.Module):
        def __init__(self, c, hidden=256):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(c, hidden), nn.Linear(hidden, 1)

        def forward(self, f):  # (N, V, C) -> (N, V)
            return self.fc2(torch.relu(self.fc1(f))).squeeze(-1).softmax(dim=-1)

    class InteractionBlock(nn.Module):
        # nn.MultiheadAttention = the Rust q/k/v/o linears (same parameter count and math)
        def __init__(self, dim, n_heads, mlp_ratio, text_residual=True):
            super().__init__()
            self.text_residual = text_residual
            self.ln_self, self.ln_q, self.ln_kv, self.ln_mlp = (nn.LayerNorm(dim) for _ in range(4))
            self.self_attn = nn.MultiheadAttention(dim, n_heads, batch_first=True)
            self.cross_attn = nn.MultiheadAttention(dim, n_heads, batch_first=True)
            self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(),
                                     nn.Linear(dim * mlp_ratio, dim))

        def forward(self, t, s):
            h = self.ln_self(t)
            t = t + self.self_attn(h, h, h, need_weights=False)[0]
            kv = self.ln_kv(s)  # InteractionConfig::text_residual keeps t in the sum
            ctx = self.cross_attn(self.ln_q(t), kv, kv, need_weights=False)[0]
            t = t + ctx if self.text_residual else ctx
            return t + self.mlp(self.ln_mlp(t))

    class CrossModal(nn.Module):
        def __init__(self, text_dim, skel_dim, dim=256, heads=4, depth=2, mlp_ratio=2,
                     text_residual=True):
            super().__init__()
            self.text_proj, self.skel_proj = nn.Linear(text_dim, dim), nn.Linear(skel_dim, dim)
            self.joint_pos = nn.Parameter(torch.randn(1, V, dim) * 0.02)
            self.blocks = nn.ModuleList([InteractionBlock(dim, heads, mlp_ratio, text_residual)
                                         for _ in range(depth)])
            self.ln_out, self.out_proj = nn.LayerNorm(dim), nn.Linear(dim, skel_dim)

        def forward(self, text, joints):
            t, s = self.text_proj(text), self.skel_proj(joints) + self.joint_pos
            for b in self.blocks:
                t = b(t, s)
            return self.out_proj(self.ln_out(t.mean(1)))

    class TextAlign(nn.Module):  # heads.rs TextAlign: the text-target branch
        def __init__(self, emb_dim, joint_dim, text_dim, dim):
            super().__init__()
            self.skel_global, self.skel_joint = nn.Linear(emb_dim, dim), nn.Linear(joint_dim, dim)
            self.text_global, self.text_local = nn.Linear(text_dim, dim), nn.Linear(text_dim, dim)
            self.log_scale = nn.Parameter(torch.tensor(2.659260036932778))  # CLIP's 1/0.07

        def forward(self, g, joints, text_global, text_local):
            """(N, E), (N, V, C), (K, D), (K, V, D) -> scaled (N, K) global and local scores"""
            sg = F.normalize(self.skel_global(g), dim=-1, eps=1e-12)
            tg = F.normalize(self.text_global(text_global), dim=-1, eps=1e-12)
            sj = F.normalize(self.skel_joint(joints), dim=-1, eps=1e-12).transpose(0, 1)
            tj = F.normalize(self.text_local(text_local), dim=-1, eps=1e-12).permute(1, 2, 0)
            scale = self.log_scale.clamp(0.0, math.log(100.0)).exp()
            return sg @ tg.t() * scale, (sj @ tj).mean(0) * scale

    # ---- CrossGlg (crossglg-model crossglg.rs) ----
    class CosineClassifier(nn.Module):  # heads.rs Classifier::Cosine (logits without margin)
        def __init__(self, dim, scale):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(num_class, dim) / math.sqrt(dim))
            self.scale = scale

        def forward(self, x):
            def l2(m):  # heads.rs l2_normalize
                return m / ((m * m).sum(-1, keepdim=True) + 1e-12).sqrt()
            return l2(x) @ l2(self.weight).t() * self.scale

    class CrossGlg(nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder, self.persons = encoder, persons
            c_out = BLOCKS[-1][0]
            jid = arch["jid"]
            self.jid_after = jid["after_block"] if jid else 0
            self.reweight = jid["reweight"] if jid else "off"
            self.jid = Jid(BLOCKS[self.jid_after - 1][0], jid["hidden"]) if jid else None
            self.ib = InfoBottleneck(c_out) if arch["info_bottleneck"] else None
            self.cross = CrossModal(skel_dim=c_out, **arch["cross"]) if arch["cross"] else None
            self.align = None
            if arch.get("text_align") and align is not None:
                self.align = TextAlign(c_out, c_out, *align)
            if arch["classifier"] == "mlp":
                h = arch["classifier_hidden"]
                self.classifier = nn.Sequential(nn.Linear(c_out, h), nn.ReLU(),
                                                nn.Linear(h, num_class))
            elif arch["classifier"] == "cosine":
                self.classifier = CosineClassifier(c_out, arch["classifier_scale"])
            else:
                self.classifier = nn.Linear(c_out, num_class)

        def joint_features(self, h):  # (N*M, C, T, V) -> (N, V, C)
            nm, c, _, v = h.shape
            return h.mean(2).view(nm // self.persons, self.persons, c, v).mean(1).transpose(1, 2)

        def skeleton_path(self, x):
            h, weight, k_out = self.encoder.stem(x), None, None
            for i, block in enumerate(self.encoder.blocks):
                h = block(h, weight)
                if i + 1 == self.jid_after and self.jid is not None:
                    k_out = self.jid(self.joint_features(h))  # (N, V)
                    n, v = k_out.shape  # features x V*k_out, x (1 + k_out), or untouched
                    if self.reweight != "off":
                        w = k_out * v if self.reweight == "multiplicative" else k_out + 1
                        weight = w.unsqueeze(1).expand(n, self.persons, v) \
                            .reshape(n * self.persons, 1, 1, v)
            return h, k_out

        def forward(self, x, text=None):
            h, k_out = self.skeleton_path(x)
            f = self.joint_features(h)
            g = f.mean(1)
            z = self.ib(g) if self.ib is not None else g
            logits_c = None
            if self.cross is not None and text is not None:
                logits_c = self.classifier(self.cross(text, f))
            return self.classifier(z), logits_c, k_out, z

        @torch.no_grad()
        def embed(self, x):
            h, _ = self.skeleton_path(x)
            g = self.joint_features(h).mean(1)
            return self.ib(g) if self.ib is not None else g

        def loss(self, out, y, k_gt):  # crossglg.rs loss_with, default LossWeights
            logits_s, logits_c, k_out, z = out
            total = F.cross_entropy(logits_s, y)
            if k_out is not None:
                total = total + 0.5 * F.mse_loss(k_out, k_gt)
            if logits_c is not None:
                total = total + 0.2 * F.cross_entropy(logits_c, y)
            if self.ib is not None:
                mmd, l2 = self.ib.mmd_loss(z, y)
                total = total + 0.1 * mmd + 1e-4 * l2
            return total

    encoder = {"st_gcn": StGcn, "ctr_gcn": CtrGcn, "info_gcn": InfoGcn}[arch["encoder"]]()
    return CrossGlg(encoder)


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
    name = args.child
    dev = torch.device(args.device)
    if dev.type != "cpu" and name == "stgcn-ref":
        sys.exit("stgcn-ref runs on the CPU only (the model variants take --device)")
    if name == "stgcn-ref":
        model = build(torch, nn, args.classes, 3, args.joints)
        x = torch.randn(args.batch, args.persons, 3, args.frames, args.joints)
        y = torch.randint(0, args.classes, (args.batch,))
        loss_fn = nn.CrossEntropyLoss()

        def loss():
            return loss_fn(model(x), y)

        def infer():
            with torch.no_grad():
                model(x)
    else:
        if args.joints != 25:
            sys.exit(f"{name} uses the NTU 25-joint graph; got --joints {args.joints}")
        model = build_model(torch, nn, name, args.classes, args.persons).to(dev)
        # as crates/crossglg-bench/src/models.rs: x (N, C, T, V, M), labels i % K, random text
        # (N, J, 384), k_gt uniform
        x = torch.randn(args.batch, 3, args.frames, args.joints, args.persons, device=dev)
        y = torch.arange(args.batch, device=dev) % args.classes
        text = (torch.randn(args.batch, args.joints, 384, device=dev)
                if model.cross is not None else None)
        k_gt = torch.full((args.batch, args.joints), 1.0 / args.joints, device=dev)

        def loss():
            return model.loss(model(x, text), y, k_gt)

        def infer():
            model.embed(x)
            if dev.type == "cuda":
                torch.cuda.synchronize()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def train_step():
        opt.zero_grad(set_to_none=True)
        l = loss()
        l.backward()
        opt.step()
        return l.item()

    def timed(f, warmup, iters):
        for _ in range(warmup):
            f()
        ts, cs = [], []
        for _ in range(max(iters, 1)):
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
    infer_ms, infer_cpu_ms = timed(infer, args.warmup, args.iters)
    out = {"name": name, "train_ms": train_ms, "infer_ms": infer_ms,
           "train_cpu_ms": train_cpu_ms, "infer_cpu_ms": infer_cpu_ms,
           "peak_rss_mb": peak_rss_mb(), "params": params, "torch": torch.__version__,
           "threads": torch.get_num_threads(), "device": str(dev)}
    if dev.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["gpu"] = torch.cuda.get_device_name()
    print(json.dumps(out))


def torch_name(variant):
    """The PyTorch twin of a Rust variant name: stgcn-ref-{plain,fused}[-tuned] -> stgcn-ref."""
    if variant == "stgcn-ref" or variant.startswith("stgcn-ref-"):
        return "stgcn-ref"
    if variant in MODEL_VARIANTS:
        return variant
    sys.exit(f"unknown variant {variant!r} (known: stgcn-ref[-plain|-fused][-tuned], "
             f"{', '.join(MODEL_VARIANTS)})")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--persons", type=int, default=2)
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--joints", type=int, default=25)
    p.add_argument("--classes", type=int, default=60)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N], for the model variants")
    p.add_argument("--variant", action="append", default=[],
                   help="stgcn-ref (default; the Rust names stgcn-ref-* map to it), "
                        + ", ".join(MODEL_VARIANTS) + "; repeatable")
    p.add_argument("--in-process", action="store_true",
                   help="accepted for bench/run.sh (the Rust side's flag); ignored here")
    p.add_argument("--json", help="write results here (JSON list)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    names = []
    for v in args.variant or ["stgcn-ref"]:
        n = torch_name(v)
        if n not in names:
            names.append(n)
    results = []
    for name in names:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", name]
        for a in ["threads", "batch", "persons", "frames", "joints", "classes", "warmup", "iters",
                  "device"]:
            cmd += [f"--{a}", str(getattr(args, a))]
        print(f"torch: running {name} ...", file=sys.stderr, flush=True)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"variant {name} failed:\n{r.stderr}")
        results.append(json.loads(r.stdout.strip().splitlines()[-1]))
    print(f"{'variant':<18} {'train ms':>9} {'cpu ms':>9} {'infer ms':>9} {'cpu ms':>9} {'peak MB':>8} {'params':>9}")
    for r in results:
        print(f"{r['name']:<18} {r['train_ms']:9.1f} {r['train_cpu_ms']:9.1f} {r['infer_ms']:9.1f} "
              f"{r['infer_cpu_ms']:9.1f} {r['peak_rss_mb']:8.0f} {r['params']:9d}")
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=1)
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
