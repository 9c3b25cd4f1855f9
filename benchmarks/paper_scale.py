"""pinid at the paper's scale, side by side with what a user would write from the paper.

Generates a corpus of the paper's shape (benchmarks/synthetic.py: 117 users x 600 pins, Zipfian
words with per-user topics, clustered 1280-d image features) and runs, each in its own child
process (so each peak RSS is its own), on the same pins and split:

- reference: scikit-learn as the paper describes it: TfidfVectorizer + LogisticRegression
  (lbfgs) per modality, C in {0.1, 1, 10, 100} by validation accuracy, refit on train +
  validation, predict_proba, cascade, then the top-10 refinement in NumPy (chunked products of
  a sparse text and a dense image block; each user's best match by one maximum.reduceat over
  the training pins grouped by user);
- pinid: pinid's default model, what ``pinid train`` saves (tune_C with the character view,
  FinalModel, ``cf_rerank``), answering through ``Model.identify_features`` and writing the
  answers as ``pinid predict --data`` does (its JSON lines, in memory): the path of
  ``pinid predict --data``, ``serve`` and the Python API;
- pinid_paper: pinid's pipeline for the paper's model (tune_C, PaperModel, ``cf_ref``).

train_s covers C tuning, the final fit and what answering needs of the training pins;
identify_pins_per_s the test pins from features (texts and image feature vectors given) to each
pin's answer, timed once right after training: for pinid the whole answer of ``pinid predict
--data`` (the ten candidates with calibrated probabilities and evidence, as its JSON lines);
for pinid_paper its refined top user (PaperModel.predict leaves out the similarities that
cannot change it; the reference computes every candidate's); accuracy is on the test pins.

    python benchmarks/paper_scale.py --scale 1.0 --json paper_scale.json
    python benchmarks/paper_scale.py --users 10000 --pins-per-user 30 --pipelines pinid
    python benchmarks/paper_scale.py --sweep          # also rewrites benchmarks/RESULTS.md
    python benchmarks/paper_scale.py --table A.json B.json   # RESULTS.md from single runs
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from child import in_child, machine
from synthetic import PAPER_PINS_PER_USER, PAPER_USERS, generate

C_GRID = (0.1, 1.0, 10.0, 100.0)
TOP_K = 10


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reference(corpus) -> dict:
    """The paper with scikit-learn, written plainly."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import normalize

    from pinid.features.text import tokenize

    parts, y = corpus.parts, corpus.users
    train, val, test = (parts == "train"), (parts == "val"), (parts == "test")
    fit_rows = train | val
    texts = np.array(corpus.texts, dtype=object)
    started = time.perf_counter()
    models = {}
    for modality in ("text", "image"):

        def features(rows, fitted=None, modality=modality):
            if modality == "image":
                return normalize(corpus.images[rows]), None
            vectorizer = fitted or TfidfVectorizer(
                tokenizer=tokenize, lowercase=False, token_pattern=None, min_df=2
            ).fit(texts[rows])
            return vectorizer.transform(texts[rows]), vectorizer

        X_train, vectorizer = features(train)
        X_val, _ = features(val, vectorizer)
        best = max(
            C_GRID,
            key=lambda C: (
                LogisticRegression(C=C, max_iter=1000).fit(X_train, y[train]).score(X_val, y[val])
            ),
        )
        X_fit, vectorizer = features(fit_rows)
        models[modality] = (LogisticRegression(C=best, max_iter=1000).fit(X_fit, y[fit_rows]),
                            vectorizer, X_fit)  # fmt: skip
    (text_lr, vectorizer, train_text), (image_lr, _, train_image) = models["text"], models["image"]
    joint_train = _joint(train_text, train_image)  # the training pins for refinement
    train_y = np.searchsorted(text_lr.classes_, y[fit_rows])
    by_user = np.argsort(train_y, kind="stable")  # columns grouped by user for reduceat
    joint_train = [block[by_user] for block in joint_train]
    starts = np.searchsorted(train_y[by_user], np.arange(len(text_lr.classes_)))
    train_s = time.perf_counter() - started

    started = time.perf_counter()
    test_text = vectorizer.transform(texts[test])
    test_image = normalize(corpus.images[test])
    scores = text_lr.predict_proba(test_text) * image_lr.predict_proba(test_image)
    joint_test = _joint(test_text, test_image)
    answers = np.empty(test.sum(), dtype=np.int64)
    for start in range(0, len(answers), 1000):  # chunks: a dense test x train matrix is GBs
        rows = slice(start, start + 1000)
        sims = (joint_test[0][rows] @ joint_train[0].T).toarray()
        sims += joint_test[1][rows] @ joint_train[1].T
        best = np.maximum.reduceat(sims, starts, axis=1)  # l_u
        top = np.argsort(-scores[rows], axis=1)[:, :TOP_K]
        refined = np.take_along_axis(scores[rows] * best, top, axis=1)
        answers[rows] = top[np.arange(len(top)), refined.argmax(axis=1)]
    identify_s = time.perf_counter() - started
    accuracy = float((text_lr.classes_[answers] == y[test]).mean())
    return _row(train_s, test.sum() / identify_s, accuracy, "scikit-learn, cascade + refinement")


def _joint(text, image):
    """The joint space as a sparse text block and a dense image block (each pin's
    concatenation unit-norm), so each part uses its own fast product."""
    from sklearn.preprocessing import normalize

    text, image = normalize(text), normalize(image)
    norms = np.sqrt(np.asarray(text.multiply(text).sum(axis=1)).ravel() + (image**2).sum(axis=1))
    scale = 1.0 / np.maximum(norms, 1e-12)
    return text.multiply(scale[:, None]).tocsr(), (image * scale[:, None]).astype(np.float32)


def _tune_C(data, split, views=None, shortlisted=True):
    from pinid.models.selection import VIEW_MODELS, tune_C

    parts = data.part(split.ids("train")), data.part(split.ids("val"))
    return tune_C(*parts, views=views or tuple(VIEW_MODELS), shortlisted=shortlisted)


def pinid_paper(corpus) -> dict:
    from pinid.models.paper_model import PaperModel

    data, split = corpus.as_pinid()
    started = time.perf_counter()
    # the paper's image regression, never shortlisted
    chosen = _tune_C(data, split, views=("text", "image"), shortlisted=False).C
    X, y = data.part(split.ids("train") | split.ids("val"))
    model = PaperModel(C_text=chosen["text"], C_image=chosen["image"]).fit(X, y)
    model.refiner()  # its training pins grouped for refinement, as the reference's are
    return _test(model, data, split, time.perf_counter() - started)


def pinid_default(corpus) -> dict:
    from pinid.api import Model
    from pinid.models.training import fit_identifier

    data, split = corpus.as_pinid()
    started = time.perf_counter()
    tuned = _tune_C(data, split)
    train_ids, val_ids = split.ids("train"), split.ids("val")
    final, pins = fit_identifier(data, train_ids | val_ids, tuned.C,
                                 tuned=(tuned, train_ids, val_ids))  # fmt: skip
    model = Model(final, pins, extractor={})  # image features are given: no CNN
    train_s = time.perf_counter() - started
    test_X, test_y = data.part(split.ids("test"))
    test_ids = [data.dataset.pins[i].pin_id for i in data.rows(split.ids("test"))]
    started = time.perf_counter()
    answers = model.identify_features(test_X.texts, test_X.images, test_X.has_image)
    lines = list(answers.json_lines(test_ids))  # what pinid predict --data writes
    identify_s = time.perf_counter() - started
    right = np.mean([json.loads(line)["user"] == user for line, user in zip(lines, test_y,
                                                                         strict=True)])  # fmt: skip
    row = _row(train_s, len(test_y) / identify_s, float(right), "cf_rerank")
    # as the C search chose (a C of None: the view's users' centroids)
    return {**row, "C": tuned.C, "cascade_weights": list(final.cascade_weights)}


def _test(model, data, split, train_s: float) -> dict:
    """Identify the test pins (features given) with a fitted pinid model."""
    test_X, test_y = data.part(split.ids("test"))
    started = time.perf_counter()
    answers = model.predict(test_X)
    identify_s = time.perf_counter() - started
    accuracy = float((answers == np.asarray(test_y)).mean())
    return _row(train_s, len(test_y) / identify_s, accuracy, "cf_ref")


def _row(train_s: float, pins_per_s: float, accuracy: float, model: str) -> dict:
    return {
        "model": model,
        "train_s": round(train_s, 1),
        "identify_pins_per_s": round(float(pins_per_s)),
        "peak_rss_mb": round(_peak_rss_mb()),
        "accuracy": round(accuracy, 4),
    }


def _on_corpus(task, scale: float, users: int) -> dict:
    """``task`` on a freshly generated corpus (run in a child process: its own peak RSS)."""
    return task(generate(scale, users))


PIPELINES = {"reference": reference, "pinid": pinid_default, "pinid_paper": pinid_paper}


def run(scale: float, users: int, which: list[str], budget_s: float) -> dict:
    shape = generate(scale, users).shape()
    out = {"shape": shape}
    for name in which:
        out[name] = in_child(_on_corpus, PIPELINES[name], scale, users, budget_s=budget_s)
        print(f"  {name:<16} {out[name] or f'not finished in {budget_s:.0f} s'}", flush=True)
    if out.get("reference") and out.get("pinid"):
        out["speedup_train"] = round(out["reference"]["train_s"] / out["pinid"]["train_s"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="share of the paper's pins")
    parser.add_argument("--users", type=int, default=117)
    parser.add_argument(
        "--pins-per-user", type=int, help="instead of --scale: this many pins for every user"
    )
    parser.add_argument("--pipelines", default="reference,pinid,pinid_paper")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--sweep", action="store_true", help="growth table -> RESULTS.md")
    parser.add_argument(
        "--budget", type=float, default=3600, help="seconds one pipeline may take at one size"
    )
    parser.add_argument(
        "--table",
        nargs="+",
        metavar="JSON",
        help="instead of running: RESULTS.md's growth table from the --json files of single runs",
    )
    args = parser.parse_args()
    if args.table:
        rows = [json.loads(Path(f).read_text(encoding="utf-8")) for f in args.table]
        _write_results([{"users": r["shape"]["users"], **r} for r in rows], args.budget)
        return
    which = args.pipelines.split(",")
    if args.pins_per_user:
        args.scale = _scale(args.users, args.pins_per_user)
    print(f"machine: {machine()}")
    if not args.sweep:
        print(f"scale {args.scale}, {args.users} users")
        result = run(args.scale, args.users, which, args.budget)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        return
    rows = []
    for users, per_user in GROWTH:
        scale = 1.0 if per_user is None else _scale(users, per_user)
        print(f"scale {scale:g}, {users} users", flush=True)
        figures = run(scale, users, ["pinid", "pinid_paper"], args.budget)
        rows.append({"scale": scale, "users": users, **figures})
        _write_results(rows, args.budget)  # after every size: a long sweep keeps what it has


GROWTH = ((117, None), (117, 30), (500, 30), (2000, 30), (10000, 30))
"""The growth table's sizes: users and pins per user (None: the paper's 600)."""


def _scale(users: int, pins_per_user: int) -> float:
    """The share of the paper's pins that gives ``users`` users this many pins each."""
    return pins_per_user * users / (PAPER_USERS * PAPER_PINS_PER_USER)


def _write_results(rows: list[dict], budget_s: float) -> None:
    lines = [
        "# pinid at the paper's scale and beyond",
        "",
        f"Written by `python benchmarks/paper_scale.py --sweep` (or `--table`) on {machine()}.",
        "pinid's default model (cf_rerank) and the paper's (cf_ref) on synthetic corpora of the",
        "paper's shape (synthetic.py): the paper's 117 users with 600 pins each, then 117 to",
        "10,000 users with 30 pins each. train = C tuning on validation + the final fit on train +",
        "validation; identify = the test pins from features to their answers (the default model's",
        "whole answers, as the JSON lines pinid predict --data writes); peak RSS of the process",
        "that did both, each pipeline in its own process.",
        "",
        "| pins | users | model | train s | identify pins/s | peak RSS MB | accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for name in ("pinid", "pinid_paper"):
            if name not in row:
                continue
            p = row[name]
            size = f"| {row['shape']['pins']:,} | {row['users']:,} | {_MODEL[name]} |"
            if p is None:
                lines.append(f"{size} not finished in {budget_s:.0f} s | | | |")
                continue
            lines.append(
                f"{size} {p['train_s']} | {p['identify_pins_per_s']:,} | "
                f"{p['peak_rss_mb']:,} | {100 * p['accuracy']:.1f} |"
            )
    path = Path(__file__).with_name("RESULTS.md")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {path}")


_MODEL = {"pinid": "cf_rerank", "pinid_paper": "cf_ref"}


if __name__ == "__main__":
    main()
