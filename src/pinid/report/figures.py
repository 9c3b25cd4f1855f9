"""The report's figures, drawn with matplotlib (Agg) from ``results.json`` alone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, no display; chosen before pyplot is imported
import matplotlib.pyplot as plt

from pinid.evaluation.experiment import FINAL as FINAL_MODEL

PAPER_MODEL = "cf_ref"


@dataclass(frozen=True)
class Figure:
    name: str
    title: str
    caption: str


def _save(fig, folder: Path, name: str) -> None:
    for suffix in ("png", "svg"):
        fig.savefig(folder / f"{name}.{suffix}", dpi=110, bbox_inches="tight")
    plt.close(fig)


def words_per_pin(results: dict, folder: Path) -> Figure:
    stats = results["analyses"]["words_per_pin"]
    users = list(stats["per_user"])
    fig, ax = plt.subplots(figsize=(max(8, len(users) * 0.16), 4.2))
    x = np.arange(len(users))
    for key, marker in (("min", "v"), ("max", "^"), ("median", "o"), ("mean", "s")):
        values = [max(stats["per_user"][u][key], 0.5) for u in users]
        ax.plot(x, values, marker, label=f"{key} (corpus {stats['corpus'][key]:.1f})", ms=4)
    ax.set_yscale("log")
    ax.set_xticks(x, users, rotation=90, fontsize=6)
    ax.set_xlabel("user")
    ax.set_ylabel("words per pin (log scale)")
    ax.set_title("Fig. 2 - words per pin, per user")
    ax.legend(fontsize=8)
    _save(fig, folder, "fig2_words_per_pin")
    c = stats["corpus"]
    return Figure(
        "fig2_words_per_pin",
        "Fig. 2: words per pin for every user",
        f"Minimum, maximum, median and mean number of words in each user's pins (log scale; "
        f"pins without words are drawn at 0.5). Corpus-wide: min {c['min']:g}, max {c['max']:g}, "
        f"median {c['median']:g}, mean {c['mean']:.1f}. Users whose median sits far above the "
        f"others write longer texts, which gives the text classifier more to work with.",
    )


def projections(results: dict, folder: Path) -> Figure:
    proj = results["analyses"]["projections"]
    colours = np.array(proj["users_of_points"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, name in zip(axes, ("text", "image"), strict=True):
        points = np.array(proj[name]["points"])
        ax.scatter(points[:, 0], points[:, 1], c=colours, cmap="tab20", s=5, alpha=0.7)
        ax.set_xlabel("principal component 1")
        ax.set_ylabel("principal component 2")
        total = proj[name]["explained_variance_total"]
        ax.set_title(f"{name}: 10 components explain {total:.3f} of the variance")
    fig.suptitle("Fig. 3 - text and image data on their first two principal components")
    _save(fig, folder, "fig3_projections")
    return Figure(
        "fig3_projections",
        "Fig. 3: distributions of text and image data over two principal components",
        f"Each dot is a pin, coloured by user (colours repeat across users). Variance explained "
        f"by 10 components: text {proj['text']['explained_variance_total']:.3f}, image "
        f"{proj['image']['explained_variance_total']:.3f} (the paper: 0.043 and 0.321). "
        f"Overlapping clouds of different colours are users the two spaces cannot separate.",
    )


def per_user_f1(results: dict, folder: Path) -> Figure:
    per_user = results["per_user_f1"]
    users = sorted(per_user[PAPER_MODEL])
    fig, ax = plt.subplots(figsize=(max(8, len(users) * 0.16), 4.2))
    x = np.arange(len(users))
    for model in ("text", "image", "late_0.3", "cf", PAPER_MODEL, FINAL_MODEL):
        ax.plot(x, [per_user[model][u] for u in users], marker=".", lw=0.8, label=model)
    ax.set_xticks(x, users, rotation=90, fontsize=6)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("user (alphabetical)")
    ax.set_ylabel("F1 on the test pins")
    ax.set_title("Fig. 4 - F1 per user for each model")
    ax.legend(fontsize=8)
    _save(fig, folder, "fig4_per_user_f1")
    return Figure(
        "fig4_per_user_f1",
        "Fig. 4: performance in F1 for each user",
        "F1 of every user under each model, users in alphabetical order. Lines that move "
        "together show that the same users are easy or hard whatever the model; the fused "
        "models (cf, cf_ref) should sit on or above the single modalities; cf_rerank is "
        "pinid's model beyond the paper.",
    )


def f1_histogram(results: dict, folder: Path) -> Figure:
    f1 = list(results["per_user_f1"][PAPER_MODEL].values())
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(f1, bins=np.linspace(0, 1, 11), edgecolor="black")
    ax.set_xlabel(f"F1 per user ({PAPER_MODEL})")
    ax.set_ylabel("number of users")
    ax.set_title(f"Fig. 5 - histogram of per-user F1 ({PAPER_MODEL})")
    _save(fig, folder, "fig5_f1_histogram")
    low = sum(v < 0.5 for v in f1)
    return Figure(
        "fig5_f1_histogram",
        f"Fig. 5: histogram of the per-user F1 of the paper's final model ({PAPER_MODEL})",
        f"How many users fall in each F1 band. {low} of {len(f1)} users are identified with "
        f"F1 below 0.5 (the paper: most of its 117 Pinterest users).",
    )


def reliability(results: dict, folder: Path) -> Figure:
    rel = results["analyses"]["reliability"]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    conf = [b["confidence"] for b in rel["bins"]]
    acc = [b["accuracy"] for b in rel["bins"]]
    sizes = [20 + 3 * b["count"] for b in rel["bins"]]
    ax.plot(conf, acc, "-", color="tab:blue")
    ax.scatter(conf, acc, s=sizes, color="tab:blue", label="bins (area ~ test pins)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"calibrated probability of the top user ({FINAL_MODEL})")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability of the final scores (ECE {rel['ece']:.3f})")
    ax.legend(fontsize=8, loc="upper left", markerscale=0.4)
    _save(fig, folder, "reliability")
    return Figure(
        "reliability",
        f"Reliability diagram of the final scores ({FINAL_MODEL})",
        f"Test pins binned by how confident the final model is in its answer (after temperature "
        f"scaling fitted on out-of-fold scores of the training pins), against how often that "
        f"answer is right. Points below the diagonal are over-confident, above it "
        f"under-confident; expected calibration error "
        f"{rel['ece']:.3f}.",
    )


def _held_out(unknown: dict) -> str:
    if "rotations" not in unknown:  # results.json of pinid 0.2: one draw of held-out users
        return "Some users held out of training"
    return f"Every user held out of training once ({unknown['rotations']} rotations)"


def _threshold_rule(unknown: dict) -> str:
    if "rejection_target" not in unknown:  # pinid 0.2
        return "the best mean of known-user accuracy and unknown-user rejection"
    target = f"{100 * unknown['rejection_target']:.0f}% of strangers' validation pins"
    if unknown["target_reached"]:
        return f"the lowest refusing {target}"
    return f"the best balance: no T below 1 refuses {target}"


def unknown_users(results: dict, folder: Path) -> Figure | None:
    unknown = results.get("unknown_users", {})
    if "curve" not in unknown:
        return None
    curve = unknown["curve"]
    fig, ax = plt.subplots(figsize=(6, 5))
    rejected = [p["unknown_rejected"] for p in curve]
    accuracy = [p["known_accuracy"] for p in curve]
    ax.plot(rejected, accuracy, "-", color="tab:blue", label="thresholds 0 to 1")
    at = unknown["test_at_threshold"]
    rule = _threshold_rule(unknown)
    ax.scatter([at["unknown_rejected"]], [at["known_accuracy"]], color="tab:red", zorder=3,
               label=f"chosen on validation: T = {unknown['threshold']:.2f}")  # fmt: skip
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("pins of unknown users answered 'unknown'")
    ax.set_ylabel("pins of known users answered right")
    ax.set_title("Unknown users: the trade-off")
    ax.legend(fontsize=8, loc="lower left")
    _save(fig, folder, "unknown_users")
    return Figure(
        "unknown_users",
        "Unknown users: accuracy on known users against rejection of unknown ones",
        f"{_held_out(unknown)}; the answer is 'unknown' when the top calibrated probability is "
        f"below T. Each point is one T from 0 to 1 on the test side; the red point is the T "
        f"chosen on validation ({unknown['threshold']:.2f}, {rule}): "
        f"{100 * at['known_accuracy']:.1f}% of known users' pins answered right, "
        f"{100 * at['unknown_rejected']:.1f}% of unknown users' pins rejected.",
    )


FIGURES: tuple[Callable[[dict, Path], Figure | None], ...] = (
    words_per_pin,
    projections,
    per_user_f1,
    f1_histogram,
    reliability,
    unknown_users,
)


def draw_all(results: dict, folder: Path) -> list[Figure]:
    folder.mkdir(parents=True, exist_ok=True)
    return [f for draw in FIGURES if (f := draw(results, folder)) is not None]
