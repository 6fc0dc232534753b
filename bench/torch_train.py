#!/usr/bin/env python3
"""The whole `crossglg train` job in PyTorch, for the end-to-end wall-time comparison
(bench/e2e.sh, issue 18 item 4): the same packed data, split, preprocessing, text encoder, model,
losses, schedule and evaluation as a crossglg run, read from that run's folder.

    bench/.venv/bin/python bench/torch_train.py RUN_DIR EXPORT_DIR [--threads 2] [--json OUT]

RUN_DIR is a finished `crossglg train` run (its resolved config.toml says what to do; its
report.json names the novel classes); EXPORT_DIR is `crossglg export RUN_DIR`, whose config.json
gives the architecture and whose layout.toml gives the graph. Nothing is taken from the trained
weights: the twin starts from PyTorch's own initialisation.

What is the same: the samples each side trains and evaluates on (auxiliary classes for training,
novel ones for the one-shot test), batch size, epochs and so steps, the model's graph and widths
(bench/torch_reference.py's twins, checked against crossglg by bench/check_export.sh), the loss
terms of the run's recipe, SGD with Nesterov momentum and weight decay under the same warm-up and
cosine schedule, all-MiniLM-L6-v2 for the text, and the evaluation: cosine nearest exemplar and
distribution calibration with a logistic regression, each on the protocol exemplars and on 50
random draws. What is only alike: the random streams (crop, rotation, sampling, draws; so the
accuracies are comparable, not equal), the protocol exemplar (the first sample of each novel
class here), and the denoising pass, which is left out (it only changes multi-person samples and
these configs keep one person).

Prints one JSON line: wall seconds per stage (load, text, train, eval, total), steps,
samples/s, peak RSS and the accuracies.
"""
import argparse
import json
import math
import os
import sys
import time
import tomllib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from check_export import read_safetensors  # noqa: E402
from torch_reference import build_model, layout_partitions, peak_rss_mb  # noqa: E402


def resolve(path):
    """Paths in a run's config.toml are relative to the working folder of the run that wrote
    them; this script runs from the repository root, as bench/e2e.sh does."""
    return path if os.path.isabs(path) else os.path.join(os.getcwd(), path)


def load_samples(cfg, layout):
    """Packed data -> list of (T, M, V, C) arrays with empty frames dropped and the first frame's
    centre joint subtracted (the deterministic part of crossglg's preprocessing), and labels."""
    tensors, meta = read_safetensors(resolve(cfg["data"]["packed"]))
    classes = json.loads(meta["classes"])
    data, offsets = tensors["data"], tensors["offsets"]
    frames, persons, labels = tensors["frames"], tensors["persons"], tensors["labels"]
    pre = cfg["preprocess"]
    m_keep, c_keep = pre["persons"], pre["spatial_channels"]
    center = layout["joints"].index(layout["center"])
    samples = []
    for i in range(len(labels)):
        t, m = int(frames[i]), int(persons[i])
        x = data[offsets[i]:offsets[i + 1]].reshape(t, m, data.shape[1], data.shape[2])
        x = x[:, :m_keep, :, :c_keep]
        if x.shape[1] < m_keep:
            pad = np.zeros((t, m_keep - x.shape[1]) + x.shape[2:], dtype=np.float32)
            x = np.concatenate([x, pad], axis=1)
        if pre.get("drop_empty_frames", True):
            keep = np.abs(x).reshape(t, -1).sum(1) > 0
            x = x[keep] if keep.any() else x
        x = x - x[0:1, 0:1, center:center + 1, :]
        samples.append(x.astype(np.float32))
    return samples, labels.astype(np.int64), classes


def crop_resize(torch, F, x, ratio, frames):
    """CTR-GCN's valid_crop_resize: a window of `ratio` of the frames (random start when
    training), linearly resized to `frames`. x: (T, M, V, C) -> (C, frames, V, M)."""
    t = x.shape[0]
    length = max(min(int(t * ratio), t), 1)
    start = np.random.randint(0, t - length + 1)
    w = torch.from_numpy(x[start:start + length])  # (L, M, V, C)
    L, M, V, C = w.shape
    w = w.permute(1, 2, 3, 0).reshape(1, M * V * C, L)
    w = F.interpolate(w, size=frames, mode="linear", align_corners=False)
    return w.reshape(M, V, C, frames).permute(2, 3, 1, 0)


def rotation(torch, max_angle):
    a = [np.random.uniform(-m, m) for m in max_angle]
    cx, sx, cy, sy, cz, sz = (math.cos(a[0]), math.sin(a[0]), math.cos(a[1]), math.sin(a[1]),
                              math.cos(a[2]), math.sin(a[2]))
    rx = torch.tensor([[1, 0, 0], [0, cx, sx], [0, -sx, cx]], dtype=torch.float32)
    ry = torch.tensor([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]], dtype=torch.float32)
    rz = torch.tensor([[cz, sz, 0], [-sz, cz, 0], [0, 0, 1]], dtype=torch.float32)
    return rz @ ry @ rx


def batch_of(torch, F, samples, idx, pre, train):
    frames = pre["frames"]
    out = []
    for i in idx:
        if train:
            lo, hi = pre["crop"]["train_ratio"]
            x = crop_resize(torch, F, samples[i], np.random.uniform(lo, hi), frames)
            if pre["rotate"]["enabled"]:
                r = rotation(torch, pre["rotate"]["max_angle"])
                x = torch.einsum("ij,jtvm->itvm", r, x)
        else:
            x = crop_resize(torch, F, samples[i], pre["crop"]["test_ratio"], frames)
        out.append(x)
    return torch.stack(out)


def embed_text(torch, encoder_dir, descriptions, class_names, joints):
    """Mean-pooled, L2-normalised all-MiniLM-L6-v2 embeddings of each class's global text and
    per-joint texts, and the raw key-joint targets (0.9 on the named joints, 0.1 spread)."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(encoder_dir)
    model = AutoModel.from_pretrained(encoder_dir).eval()
    by_name = {c["name"]: c for c in descriptions["classes"]}

    def enc(texts):
        outs = []
        for i in range(0, len(texts), 64):
            b = tok(texts[i:i + 64], padding=True, truncation=True, max_length=256,
                    return_tensors="pt")
            with torch.no_grad():
                h = model(**b).last_hidden_state
            m = b["attention_mask"].unsqueeze(-1).float()
            e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            outs.append(torch.nn.functional.normalize(e, dim=-1))
        return torch.cat(outs)

    glob = enc([by_name[c]["global"] for c in class_names])
    local = enc([by_name[c]["local"][j] for c in class_names for j in joints])
    local = local.view(len(class_names), len(joints), -1)
    v = len(joints)
    key = torch.full((len(class_names), v), 0.1 / v)
    for k, c in enumerate(class_names):
        named = [joints.index(j) for j in by_name[c]["key_joints"] if j in joints]
        for j in named:
            key[k, j] += 0.9 / len(named)
        if not named:
            key[k] = 1.0 / v
    return glob, local, key


def contrast_targets(key, floor=0.1):
    """textsrc.rs contrast_targets: what each class has above the classes' mean, renormalised."""
    above = (key - key.mean(0, keepdim=True)).clamp(min=0)
    s = above.sum(1, keepdim=True)
    v = key.shape[1]
    out = (1 - floor) * above / s.clamp(min=1e-9) + floor / v
    return out.where(s > 1e-9, 1.0 / v)


def lr_at(step, steps_per_epoch, cfg):
    o = cfg["optim"]
    warm = o.get("warmup_epochs", 0) * steps_per_epoch
    total = cfg["epochs"] * steps_per_epoch
    if step < warm:
        return o["lr"] * (step + 1) / warm
    p = (step - warm) / max(total - warm, 1)
    return o["lr"] * 0.5 * (1 + math.cos(math.pi * p))


def tukey(x, lam):
    return x.sign() * x.abs().pow(lam)


def calibrated_logreg(torch, base, ex, ex_y, queries, s):
    """Distribution calibration (Yang et al.): each exemplar's Tukey-transformed embedding with
    its k nearest base classes' mean and covariance (+ alpha), samples from that Gaussian, a
    logistic regression on samples and exemplars."""
    lam, k, alpha, per = s["transform"]["lambda"], s["k"], s["alpha"], s["samples_per_class"]
    means, covs = base
    feats, ys = [], []
    for e, y in zip(tukey(ex, lam), ex_y):
        near = torch.cdist(e[None], means)[0].topk(k, largest=False).indices
        mu = torch.cat([means[near], e[None]]).mean(0)
        cov = covs[near].mean(0) + alpha * torch.eye(len(e))
        dist = torch.distributions.MultivariateNormal(mu, covariance_matrix=cov)
        feats += [dist.sample((per,)), e[None]]
        ys += [torch.full((per + 1,), int(y))]
    xs, ys = torch.cat(feats), torch.cat(ys)
    c = s["classifier"]
    clf = torch.nn.Linear(xs.shape[1], int(ex_y.max()) + 1)
    opt = torch.optim.SGD(clf.parameters(), lr=c["learning_rate"], weight_decay=c["l2"])
    for _ in range(c["epochs"]):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(clf(xs), ys).backward()
        opt.step()
    with torch.no_grad():
        return clf(tukey(queries, lam)).argmax(1)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run")
    p.add_argument("export")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json")
    args = p.parse_args()
    t0 = time.perf_counter()

    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.set_num_threads(args.threads)
    with open(os.path.join(args.run, "config.toml"), "rb") as f:
        cfg = tomllib.load(f)
    seed = cfg.get("seed", 0)
    torch.manual_seed(seed)
    np.random.seed(seed)
    with open(os.path.join(args.export, "config.json")) as f:
        arch = json.load(f)["architecture"]
    with open(os.path.join(args.export, "layout.toml"), "rb") as f:
        layout = tomllib.load(f)
    with open(os.path.join(args.run, "report.json")) as f:
        report = json.load(f)
    novel = report[0]["classes"]
    cal_settings = next(r["settings"] for r in report if r["method"] == "calibrated-logreg")
    draws = report[0]["draws"]["draws"]["count"]

    # ---- load: packed data, split, deterministic preprocessing
    samples, labels, classes = load_samples(cfg, layout)
    novel_ids = [classes.index(c) for c in novel]
    aux_ids = [i for i in range(len(classes)) if i not in novel_ids]
    train_idx = [i for i in range(len(labels)) if labels[i] in aux_ids]
    train_y = torch.tensor([aux_ids.index(int(labels[i])) for i in train_idx])
    t_load = time.perf_counter()

    # ---- text
    joints = layout["joints"]
    with open(resolve(cfg["text"]["descriptions"])) as f:
        descriptions = json.load(f)
    aux_names = [classes[i] for i in aux_ids]
    tg, tl, key = embed_text(torch, resolve(cfg["text"]["encoder"]), descriptions,
                             aux_names, joints)
    if cfg["text"].get("key_joints") == "contrast":
        key = contrast_targets(key)
    t_text = time.perf_counter()

    # ---- model and training
    inter = cfg["model"].get("interaction", {})
    model = build_model(torch, nn, None, None, None, arch=arch,
                        graph=layout_partitions(torch, layout),
                        align=(inter.get("text_dim", 384), inter.get("dim", 256)))
    loss_w = cfg["model"].get("loss", {})
    o = cfg["optim"]
    opt = torch.optim.SGD(model.parameters(), lr=o["lr"], momentum=o.get("momentum", 0.9),
                          nesterov=o.get("nesterov", False), weight_decay=o.get("weight_decay", 0))
    bs, epochs, pre = cfg["batch_size"], cfg["epochs"], cfg["preprocess"]
    steps_per_epoch = math.ceil(len(train_idx) / bs)
    step, seen = 0, 0
    model.train()
    for _ in range(epochs):
        loss_sum, count, correct = 0.0, 0, 0
        order = np.random.permutation(len(train_idx))
        for b in range(steps_per_epoch):
            pick = order[b * bs:(b + 1) * bs]
            x = batch_of(torch, F, samples, [train_idx[i] for i in pick], pre, True)
            y = train_y[pick]
            for g in opt.param_groups:
                g["lr"] = lr_at(step, steps_per_epoch, cfg)
            h, k_out = model.skeleton_path(x)
            f = model.joint_features(h)
            g_ = f.mean(1)
            z = model.ib(g_) if model.ib is not None else g_
            logits = model.classifier(z)
            loss = F.cross_entropy(logits, y)
            if k_out is not None:
                gt = key[y]
                if loss_w.get("cal_form") == "kl":
                    cal = (gt * ((gt + 1e-12).log() - (k_out + 1e-12).log())).sum(1).mean()
                else:
                    cal = F.mse_loss(k_out, gt)
                loss = loss + loss_w.get("cal", 0.5) * cal
            if model.align is not None:
                lg, ll = model.align(z, f, tg, tl)
                loss = loss + loss_w.get("cross", 1.0) * 0.5 * (F.cross_entropy(lg, y)
                                                                 + F.cross_entropy(ll, y))
                if loss_w.get("distill", 0) > 0:
                    t = loss_w.get("distill_temperature", 2.0)
                    teacher = ((lg + ll) * 0.5).detach() / t
                    kl = (teacher.softmax(-1) * (teacher.log_softmax(-1)
                                                 - (logits / t).log_softmax(-1))).sum(1).mean()
                    loss = loss + loss_w["distill"] * kl * t * t
            if model.ib is not None:
                mmd, l2 = model.ib.mmd_loss(z, y)
                loss = loss + loss_w.get("ib_mmd", 0.1) * mmd + loss_w.get("ib_l2", 1e-4) * l2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            seen += len(pick)
            # read back every step, as crossglg does on the CPU
            loss_sum += float(loss.detach()) * len(pick)
            correct += int((logits.argmax(1) == y).sum())
            count += len(pick)
    final_loss, train_accuracy = loss_sum / max(count, 1), correct / max(count, 1)
    t_train = time.perf_counter()

    # ---- evaluation: embeddings, cosine nearest exemplar, distribution calibration
    model.eval()

    def embed(idx):
        out = []
        for i in range(0, len(idx), 64):
            out.append(model.embed(batch_of(torch, F, samples, idx[i:i + 64], pre, False)))
        return torch.cat(out)

    test_idx = [i for i in range(len(labels)) if labels[i] in novel_ids]
    test_y = torch.tensor([novel_ids.index(int(labels[i])) for i in test_idx])
    e_test = embed(test_idx)
    e_base = tukey(embed(train_idx), cal_settings["transform"]["lambda"])
    base_means = torch.stack([e_base[train_y == k].mean(0) for k in range(len(aux_ids))])
    base_covs = torch.stack([torch.cov(e_base[train_y == k].t()) for k in range(len(aux_ids))])
    first = [int((test_y == k).nonzero()[0]) for k in range(len(novel_ids))]
    choices = [first] + [[int(np.random.choice((test_y == k).nonzero().flatten().numpy()))
                          for k in range(len(novel_ids))] for _ in range(draws)]
    acc_nn, acc_cal = [], []
    for ex in choices:
        q = torch.tensor([i for i in range(len(test_idx)) if i not in ex])
        ex_e, ex_y = e_test[ex], test_y[ex]
        sims = F.normalize(e_test[q], dim=-1) @ F.normalize(ex_e, dim=-1).t()
        acc_nn.append(float((ex_y[sims.argmax(1)] == test_y[q]).float().mean()))
        pred = calibrated_logreg(torch, (base_means, base_covs), ex_e, ex_y, e_test[q],
                                 cal_settings)
        acc_cal.append(float((pred == test_y[q]).float().mean()))
    t_eval = time.perf_counter()

    out = {
        "run": args.run, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "load_s": t_load - t0, "text_s": t_text - t_load, "train_s": t_train - t_text,
        "eval_s": t_eval - t_train, "total_s": t_eval - t0, "steps": step,
        "samples_per_s": seen / (t_train - t_text), "final_loss": final_loss,
        "train_accuracy": train_accuracy,
        "peak_rss_mb": peak_rss_mb(),
        "cosine_nn": acc_nn[0], "cosine_nn_draws": float(np.mean(acc_nn[1:])),
        "calibrated": acc_cal[0], "calibrated_draws": float(np.mean(acc_cal[1:])),
    }
    line = json.dumps(out)
    print(line)
    if args.json:
        with open(args.json, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
