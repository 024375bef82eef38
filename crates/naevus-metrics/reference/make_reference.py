#!/usr/bin/env python3
"""Generate reference datasets and expected metric values for naevus-metrics.

Writes small CSVs and expected.json into ../tests/reference/. The Rust test
`tests/reference.rs` reads only these committed files (no Python at test time).

Sources of truth:
  * AUC, AP: isic-challenge-scoring (isic_challenge_scoring.metrics.auc /
    .average_precision, thin wrappers over scikit-learn) when importable,
    otherwise scikit-learn directly.
  * pAUC above 0.8 TPR: the ISIC 2024 (Kaggle) challenge formula, built on
    sklearn.metrics.roc_auc_score(max_fpr=...). isic-challenge-scoring's
    `auc_above_sensitivity` is the older ISIC 2016-2020 metric (area under the
    whole curve right of the TPR crossing, range 0..1), NOT the 2024 metric.
  * sens@spec / spec@sens: from sklearn roc_curve(drop_intermediate=False) with
    the rule documented in naevus-metrics (best primary rate among ROC vertices
    meeting the target within 1e-12, ties -> best secondary rate).
  * ECE: numpy, equal-width bins, bin = min(floor(p*bins), bins-1).
  * Brier, balanced accuracy, macro OvR AUC: scikit-learn.

Usage: python make_reference.py  (needs numpy, pandas, scikit-learn;
optionally isic-challenge-scoring)
"""
import json
import os

import numpy as np
import pandas as pd
import sklearn
import sklearn.metrics as skm

try:
    import importlib.metadata as md
    from isic_challenge_scoring import metrics as isic_metrics

    ISIC_VERSION = md.version("isic-challenge-scoring")
except Exception:  # pragma: no cover
    isic_metrics = None
    ISIC_VERSION = None

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference")
TOL = 1e-12


def fmt(x):
    return "%.17g" % x


def official_pauc(labels, scores, min_tpr=0.80):
    """ISIC 2024 challenge score (Kaggle metric), core lines reproduced."""
    v_gt = abs(np.asarray(labels) - 1)
    v_pred = np.array([1.0 - x for x in scores])
    max_fpr = abs(1 - min_tpr)
    partial_auc_scaled = skm.roc_auc_score(v_gt, v_pred, max_fpr=max_fpr)
    return 0.5 * max_fpr**2 + (max_fpr - 0.5 * max_fpr**2) / (1.0 - 0.5) * (partial_auc_scaled - 0.5)


def auc(labels, scores):
    if isic_metrics is not None:
        w = pd.Series(np.ones(len(labels)))
        return float(isic_metrics.auc(pd.Series(labels), pd.Series(scores), w))
    return float(skm.roc_auc_score(labels, scores))


def ap(labels, scores):
    if isic_metrics is not None:
        w = pd.Series(np.ones(len(labels)))
        return float(isic_metrics.average_precision(pd.Series(labels), pd.Series(scores), w))
    return float(skm.average_precision_score(labels, scores))


def operating_point(labels, scores, target, mode):
    labels = np.asarray(labels)
    pos = labels.sum()
    neg = len(labels) - pos
    fpr, tpr, thr = skm.roc_curve(labels, scores, drop_intermediate=False)
    # recover exact counts, then rates as naevus computes them
    fp = np.rint(fpr * neg).astype(int)
    tp = np.rint(tpr * pos).astype(int)
    sens = tp / pos
    spec = (neg - fp) / neg
    if mode == "sens_at_spec":
        ok = spec >= target - TOL
        key = [(tp[i], neg - fp[i]) for i in range(len(thr))]
    else:
        ok = sens >= target - TOL
        key = [(neg - fp[i], tp[i]) for i in range(len(thr))]
    best = max((i for i in range(len(thr)) if ok[i]), key=lambda i: key[i])
    t = float(thr[best])
    return {
        "threshold": None if np.isinf(t) else t,
        "sensitivity": float(sens[best]),
        "specificity": float(spec[best]),
    }


def ece(labels, probs, bins=10):
    labels = np.asarray(labels, dtype=float)
    probs = np.asarray(probs, dtype=float)
    idx = np.minimum((probs * bins).astype(int), bins - 1)
    total = 0.0
    for k in range(bins):
        m = idx == k
        if m.any():
            total += m.sum() / len(probs) * abs(probs[m].mean() - labels[m].mean())
    return float(total)


def binary_expected(labels, scores, keys=None):
    e = {
        "auc": auc(labels, scores),
        "sklearn_auc": float(skm.roc_auc_score(labels, scores)),
        "pauc_above_tpr_0.8": float(official_pauc(labels, scores, 0.8)),
        "average_precision": ap(labels, scores),
        "sens_at_spec_0.9": operating_point(labels, scores, 0.9, "sens_at_spec"),
        "sens_at_spec_0.95": operating_point(labels, scores, 0.95, "sens_at_spec"),
        "spec_at_sens_0.9": operating_point(labels, scores, 0.9, "spec_at_sens"),
        "spec_at_sens_0.95": operating_point(labels, scores, 0.95, "spec_at_sens"),
        "ece_10": ece(labels, scores, 10),
        "brier": float(skm.brier_score_loss(labels, scores)),
    }
    if keys is not None:
        groups = []
        df = pd.DataFrame({"s": scores, "y": labels, "k": keys})
        # naevus order: missing key first, then keys sorted (byte order)
        uniq = sorted(set(k for k in keys if k is not None))
        order = ([None] if any(k is None for k in keys) else []) + uniq
        for k in order:
            sub = df[df.k.isna()] if k is None else df[df.k == k]
            y, s = sub.y.to_numpy(), sub.s.to_numpy()
            groups.append({
                "key": k,
                "n": int(len(sub)),
                "positives": int(y.sum()),
                "auc": float(skm.roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None,
            })
        e["subgroups"] = groups
    return e


def write_binary(name, scores, labels, keys=None):
    path = os.path.join(OUT, f"{name}.csv")
    with open(path, "w") as f:
        f.write("score,label,key\n")
        for i, (s, y) in enumerate(zip(scores, labels)):
            k = "" if keys is None or keys[i] is None else keys[i]
            f.write(f"{fmt(s)},{int(y)},{k}\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240607)
    binary = {}

    # 1. tiny set with a cross-class tie
    tiny_s = [0.1, 0.4, 0.4, 0.8, 0.35]
    tiny_y = [0, 0, 1, 1, 1]
    binary["tiny"] = (tiny_s, tiny_y, None)

    # 2. small set with many tie runs (scores on a 0.1 grid)
    ties_y = rng.integers(0, 2, 24)
    ties_s = np.clip(np.round(0.5 + 0.25 * (ties_y - 0.5) + rng.normal(0, 0.2, 24), 1), 0, 1)
    binary["ties"] = (ties_s.tolist(), ties_y.tolist(), None)

    # 3. imbalanced ~200 items, ~10% positive, scores rounded to 0.02 -> many ties
    n = 200
    imb_y = (rng.random(n) < 0.1).astype(int)
    logit = rng.normal(-2.0, 1.0, n) + 2.0 * imb_y
    imb_s = np.round(1 / (1 + np.exp(-logit)) / 0.02) * 0.02
    imb_s = np.clip(imb_s, 0.0, 1.0)
    sites = ["head/neck", "lower extremity", "posterior torso", "upper extremity"]
    keys = [None if rng.random() < 0.08 else sites[rng.integers(0, 4)] for _ in range(n)]
    binary["imbalanced"] = (imb_s.tolist(), imb_y.tolist(), keys)

    # 4. tiny probabilities: 1.0 - p collapses them (tests the official 1 - p flip)
    tp_y = [0, 1, 0, 1, 0, 0, 1, 0, 1, 0]
    tp_s = [1e-20, 3e-19, 2e-18, 1e-17, 0.3, 0.2, 0.9, 0.05, 0.6, 0.6]
    binary["tiny_probs"] = (tp_s, tp_y, None)

    expected = {
        "generator": {
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "isic_challenge_scoring": ISIC_VERSION,
        },
        "binary": {},
    }
    for name, (s, y, k) in binary.items():
        write_binary(name, s, y, k)
        # re-read exactly what was written so Python and Rust see the same floats
        s_rt = [float(fmt(v)) for v in s]
        expected["binary"][name] = binary_expected(y, s_rt, k)

    # 5. multi-class: 4 classes, 120 items, softmax rows (some duplicated -> ties)
    nc, m = 4, 120
    true = rng.integers(0, nc, m)
    logits = rng.normal(0, 1.0, (m, nc))
    logits[np.arange(m), true] += 1.2
    logits = np.round(logits, 1)  # ties in columns
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    probs = np.array([[float(fmt(v)) for v in row] for row in probs])
    pred = probs.argmax(axis=1)
    with open(os.path.join(OUT, "multiclass.csv"), "w") as f:
        f.write(",".join([f"p{c}" for c in range(nc)] + ["label"]) + "\n")
        for row, y in zip(probs, true):
            f.write(",".join(fmt(v) for v in row) + f",{int(y)}\n")
    expected["multiclass"] = {
        "n_classes": nc,
        "balanced_accuracy_argmax": float(skm.balanced_accuracy_score(true, pred)),
        "macro_auc_ovr": float(skm.roc_auc_score(true, probs, multi_class="ovr", average="macro")),
    }

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=2, allow_nan=False)
        f.write("\n")


if __name__ == "__main__":
    main()
