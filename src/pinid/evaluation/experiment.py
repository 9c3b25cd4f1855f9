"""The paper's protocol on one dataset: split 4:1:1, tune C, refit, evaluate every model.

Everything the report and the CLI show comes from the ``results`` dict written here to
``results.json`` -- one source of truth for every figure.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

from pinid import __version__
from pinid._atomic import atomic_write_text, check_output_folder
from pinid.data import Dataset, Split, load_split, make_split, save_split
from pinid.errors import DataError
from pinid.evaluation.analyses import analyse
from pinid.evaluation.calibration import calibration_summary
from pinid.evaluation.metrics import RECALL_K, evaluate_ranking
from pinid.evaluation.unknown import unknown_users
from pinid.features import MAX_FAILURE_RATE
from pinid.features.dataset import PinFeatures, PreparedData, prepare
from pinid.features.extract import ImageFeatureExtractor
from pinid.models.fusion import cascade, late
from pinid.models.identifier import PinIdentifier
from pinid.models.io import save_model
from pinid.models.modality import (
    C_GRID,
    make_char_model,
    make_image_model,
    make_text_model,
    select_C,
)
from pinid.models.ranking import top_k
from pinid.models.reranked import RerankedIdentifier
from pinid.models.similarity import SPACES
from pinid.models.training import extractor_record, fit_identifier

LATE_LAMBDAS = (0.3, 0.5, 0.7)
TABLE_ROWS = ("text", "image", "late_0.3", "late_0.5", "late_0.7", "cf", "cf_ref")
BEYOND_ROWS = ("cf", "text_char", "cf_char", "cf_ref", "cf_rerank")
"""The ablation beyond the paper: each addition on the same split and test pins."""
FINAL = "cf_rerank"


VIEW_MODELS = {"text": make_text_model, "char": make_char_model, "image": make_image_model}


def tune_C(
    data: PreparedData, split: Split, views: tuple[str, ...] = tuple(VIEW_MODELS)
) -> tuple[dict[str, float], dict[str, dict]]:
    """C per view by validation accuracy, each view on its own."""
    train_X, train_y = data.part(split.ids("train"))
    val_X, val_y = data.part(split.ids("val"))
    chosen, scores = {}, {}
    for view in views:
        X_train, X_val = (
            (train_X.images, val_X.images)
            if view == "image"
            else (list(train_X.texts), list(val_X.texts))
        )
        chosen[view], scores[view] = select_C(
            VIEW_MODELS[view](), X_train, train_y, X_val, val_y, C_GRID
        )
    return chosen, scores


def model_scores(model: PinIdentifier, X: PinFeatures) -> dict[str, np.ndarray]:
    """Per-user scores of every phase-1 model and baseline (rows: pins, columns: classes_)."""
    r_text, r_image = model.modality_proba(X)
    scores = {"text": r_text, "image": r_image}
    for lam in LATE_LAMBDAS:
        scores[f"late_{lam}"] = late(r_text, r_image, lam)
    scores["cf"] = cascade(r_text, r_image)
    return scores


def run_experiment(
    dataset: Dataset,
    out: Path,
    *,
    seed: int = 0,
    extractor: ImageFeatureExtractor | None = None,
    similarity: str = "joint",
    max_unreadable: float = MAX_FAILURE_RATE,
    strict: bool = False,
    split_file: Path | None = None,
) -> tuple[dict, RerankedIdentifier]:
    """Run the protocol; write ``out/split.json``, ``out/results.json`` and ``out/model/``."""
    timings: dict[str, float] = {}
    check_output_folder(out, "results.json", "split.json", "corpus/manifest.jsonl")
    dataset = dataset.drop_small_users(strict=strict)
    # The split is of the dataset as given (as `pinid data split` makes it); pins whose image
    # turns out unreadable simply drop out of their part.
    split = choose_split(dataset, out / "split.json", seed, split_file)

    clock = time.perf_counter()
    extractor = extractor or ImageFeatureExtractor()
    data = prepare(dataset, extractor, max_unreadable=max_unreadable, strict=strict)
    timings["features"] = time.perf_counter() - clock

    clock = time.perf_counter()
    chosen, validation = tune_C(data, split)
    timings["tune_C"] = time.perf_counter() - clock

    clock = time.perf_counter()
    val_ids = split.ids("val")
    reranked, training_pins = fit_identifier(
        data, split.ids("train") | val_ids, chosen, similarity, calibrate_ids=val_ids
    )
    model = reranked.views_.base  # the paper's model, fitted on train + validation
    timings["refit"] = time.perf_counter() - clock

    clock = time.perf_counter()
    test_X, test_y = data.part(split.ids("test"))
    y_true = np.searchsorted(model.classes_, test_y)
    models, per_user = {}, {}
    scores = model_scores(model, test_X)
    views = reranked.views_.probabilities(test_X)
    scores["text_char"], scores["cf_char"] = views["char"], cascade(*views.values())
    for name, matrix in scores.items():
        models[name], per_user[name] = evaluate_ranking(
            y_true, top_k(matrix, RECALL_K), model.classes_
        )
    refined = {space: model.refine(scores["cf"], test_X, space) for space in SPACES}
    models["cf_ref"], per_user["cf_ref"] = evaluate_ranking(
        y_true, refined[similarity].users, model.classes_
    )
    for space in SPACES:  # every space under its own name too (joint only when not the default)
        if space != "joint" or similarity != "joint":
            name = f"cf_ref_{space}"
            models[name], per_user[name] = evaluate_ranking(
                y_true, refined[space].users, model.classes_
            )
    final = reranked.rerank(test_X)
    models["cf_rerank"], per_user["cf_rerank"] = evaluate_ranking(
        y_true, final.users, model.classes_
    )
    calibration = calibration_summary(y_true, final, refined[similarity], reranked.temperature_)
    timings["evaluate"] = time.perf_counter() - clock

    clock = time.perf_counter()
    unknown = unknown_users(data, split, chosen, similarity, seed)
    timings["unknown_users"] = time.perf_counter() - clock

    clock = time.perf_counter()
    analyses = analyse(  # the paper's analyses of its model; confusions and calibration of ours
        data, model, y_true, final.users[:, 0], final.probability[:, 0], per_user["cf_ref"], seed
    )
    timings["analyses"] = time.perf_counter() - clock

    used = {p.pin_id for p in data.dataset.pins}  # without pins whose image was unreadable
    counts = {part: len(split.ids(part) & used) for part in ("train", "val", "test")}
    results = {
        "pinid_version": __version__,
        "dataset": {
            "source": str(dataset.source),
            "n_users": len(data.dataset.users),
            "n_pins": len(data.dataset),
            "n_train": counts["train"],
            "n_val": counts["val"],
            "n_test": counts["test"],
            "unreadable": data.unreadable,
        },
        "protocol": {
            "seed": seed,
            "split": "4:1:1 per user",
            "C_grid": list(C_GRID),
            "similarity": similarity,
            "top_k": model.top_k,
            "extractor": extractor.extractor_id,
        },
        "models": models,
        "final_model": FINAL,
        "per_user_f1": per_user,
        "calibration": calibration,
        "unknown_users": unknown,
        "chosen_C": chosen,
        "validation_accuracy": {
            m: {str(c): a for c, a in s.items()} for m, s in validation.items()
        },
        "analyses": analyses,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }
    save_split(split, out / "split.json")  # only now: a failed run leaves nothing behind
    save_model(
        out / "model", reranked, training_pins, extractor_record(extractor), seed=seed,
        suggested_reject_below=unknown.get("threshold"),
    )  # fmt: skip
    atomic_write_text(
        out / "results.json", json.dumps(results, indent=2, ensure_ascii=False) + "\n"
    )
    return results, reranked


def split_for(dataset: Dataset, split_file: Path) -> Split:
    """A saved split, restricted to the dataset's pins, every one of which it must cover."""
    split = load_split(split_file)
    pin_ids = {p.pin_id for p in dataset.pins}
    missing = pin_ids - set(split.assignment)
    if missing:
        raise DataError(
            f"{split_file}: split does not cover {len(missing)} pin(s) of {dataset.source}, "
            f"e.g. {sorted(missing)[0]!r}"
        )
    return Split({k: v for k, v in split.assignment.items() if k in pin_ids}, split.seed)


def choose_split(dataset: Dataset, saved: Path, seed: int, split_file: Path | None = None) -> Split:
    """``split_file`` if given (it must cover every pin), else the run folder's saved split
    when it fits the data and seed, else a new one."""
    pin_ids = {p.pin_id for p in dataset.pins}
    if split_file is not None:
        split = split_for(dataset, split_file)
    elif (
        saved.exists()
        and (old := load_split(saved)).seed == seed
        and set(old.assignment) == pin_ids
    ):
        split = old
    else:
        split = make_split(dataset, seed)
    return split


def format_summary(results: dict) -> str:
    """The run in a few lines: data sizes and chosen C, calibration, unknown users, time."""
    d, t = results["dataset"], results["timings_s"]
    C = results["chosen_C"]
    lines = [
        f"{d['n_users']} users, {d['n_pins']} pins "
        f"(train {d['n_train']} / val {d['n_val']} / test {d['n_test']}); "
        + "C "
        + ", ".join(f"{view} {C[view]:g}" for view in C)
    ]
    c = results["calibration"]
    lines.append(
        f"calibration ({FINAL}): expected calibration error {c['ece_before']:.3f} before, "
        f"{c['ece_after']:.3f} after temperature {c['temperature']:.2f} "
        f"(cf_ref: {c['ece_cf_ref']:.3f})"
    )
    u = results["unknown_users"]
    if "threshold" in u:
        at = u["test_at_threshold"]
        lines.append(
            f"unknown users: below {u['threshold']:.2f} (chosen on validation) "
            f"{100 * at['unknown_rejected']:.1f}% of unknown users' test pins rejected, "
            f"{100 * at['known_accuracy']:.1f}% of known users' answered right "
            f"({100 * u['test_without_rejection']['known_accuracy']:.1f}% without rejection)"
        )
    else:
        lines.append(f"unknown users: {u['skipped']}")
    lines.append("time: " + ", ".join(f"{stage} {s:.1f} s" for stage, s in t.items()))
    return "\n".join(lines)


def format_table(results: dict) -> str:
    """Table 2 of the paper: every model's accuracy, macro-F1 and recall@10 in %."""
    header = f"{'model':<14}{'accuracy':>10}{'macro-F1':>10}{'recall@10':>11}"
    lines = [header, "-" * len(header)]
    rows = list(TABLE_ROWS) + [m for m in results["models"] if m not in TABLE_ROWS]
    for name in rows:
        m = results["models"][name]
        lines.append(
            f"{name:<14}{100 * m['accuracy']:>10.1f}{100 * m['macro_f1']:>10.1f}"
            f"{100 * m['recall_at_10']:>11.1f}"
        )
    return "\n".join(lines)
