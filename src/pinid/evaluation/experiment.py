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
from pinid.data import Dataset, save_split
from pinid.data.split import choose_split
from pinid.evaluation.analyses import analyse
from pinid.evaluation.calibration import calibration_summary
from pinid.evaluation.linking import linking_results, real_pairs
from pinid.evaluation.metrics import RECALL_K, evaluate_ranking
from pinid.evaluation.unknown import unknown_users
from pinid.features import MAX_FAILURE_RATE
from pinid.features.dataset import prepare
from pinid.features.extract import ImageFeatureExtractor
from pinid.features.pin_features import PinFeatures
from pinid.models.final_model import VIEWS, FinalModel
from pinid.models.fits import Fits
from pinid.models.fusion import cascade, late
from pinid.models.io import save_model
from pinid.models.paper_model import PaperModel
from pinid.models.ranking import top_k
from pinid.models.selection import C_GRID, tune_C
from pinid.models.similarity import SPACES
from pinid.models.training import extractor_record, fit_identifier

LATE_LAMBDAS = (0.3, 0.5, 0.7)
TABLE_ROWS = ("text", "image", "late_0.3", "late_0.5", "late_0.7", "cf", "cf_ref")
BEYOND_ROWS = ("cf", "text_char", "cf_char", "cf_ref", "cf_rerank")
"""The ablation beyond the paper: each addition on the same split and test pins."""
FINAL = "cf_rerank"


def model_scores(model: PaperModel, X: PinFeatures) -> dict[str, np.ndarray]:
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
    fits: Fits | None = None,
) -> tuple[dict, FinalModel]:
    """Run the protocol; write ``out/split.json``, ``out/results.json`` and ``out/model/``.
    ``fits``: where C tuning's and the cross-fitting's fits run (default: this process)."""
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
    train_ids, val_ids = split.ids("train"), split.ids("val")
    tuned = tune_C(data.part(train_ids), data.part(val_ids), fits=fits)
    chosen, validation = tuned.C, tuned.scores
    timings["tune_C"] = time.perf_counter() - clock

    clock = time.perf_counter()
    reranked, training_pins = fit_identifier(
        data,
        train_ids | val_ids,
        chosen,
        similarity,
        fits=fits,
        tuned=(tuned, train_ids, val_ids),
    )
    # the paper's model, fitted on train + validation: the default model's word and image
    # views (with many users its image regression is fitted over shortlists:
    # pinid.models.shortlist; benchmarks/paper_scale.py fits the paper's apart)
    model = reranked.views_.base
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
    final = reranked.rank(test_X)
    models["cf_rerank"], per_user["cf_rerank"] = evaluate_ranking(
        y_true, final.users, model.classes_
    )
    calibration = calibration_summary(y_true, final, refined[similarity], reranked.temperature_)
    timings["evaluate"] = time.perf_counter() - clock

    clock = time.perf_counter()
    unknown = unknown_users(data, split, reranked, seed)
    timings["unknown_users"] = time.perf_counter() - clock

    clock = time.perf_counter()
    board = {p.pin_id: p.board for p in data.dataset.pins}
    linking = linking_results(
        training_pins.texts, model.train_image_, training_pins.users,
        [board[pin_id] for pin_id in training_pins.pin_ids], seed,
    )  # fmt: skip
    linking["pairs"] = real_pairs(reranked, training_pins)
    timings["linking"] = time.perf_counter() - clock

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
        "linking": linking,
        "chosen_C": chosen,
        "validation_accuracy": {
            m: {"centroids" if c is None else str(c): a for c, a in s.items()}
            for m, s in validation.items()
        },
        "cascade": {  # the default model's candidates: each cascade's validation recall@k
            "chosen_weights": dict(zip(VIEWS, tuned.cascade, strict=True)),
            "validation": [
                {"weights": dict(zip(VIEWS, w, strict=True)), "recall_at_k": r, "accuracy": a}
                for w, (r, a) in tuned.cascade_scores.items()
            ],
        },
        "analyses": analyses,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }
    save_split(split, out / "split.json")  # only now: a failed run leaves nothing behind
    save_model(
        out / "model", reranked, training_pins, extractor_record(extractor), seed=seed,
        reject_below=unknown.get("threshold"),
    )  # fmt: skip
    atomic_write_text(
        out / "results.json", json.dumps(results, indent=2, ensure_ascii=False) + "\n"
    )
    return results, reranked
