"""What ``pinid experiment`` and ``pinid demo`` print: the run in a few lines and table 2, read
from ``results.json``'s dict."""

from __future__ import annotations

from pinid.evaluation.experiment import FINAL, TABLE_ROWS
from pinid.models.modality import describe_C


def format_summary(results: dict) -> str:
    """The run in a few lines: data sizes and chosen C, calibration, unknown users, time."""
    d, t = results["dataset"], results["timings_s"]
    C = results["chosen_C"]
    lines = [
        f"{d['n_users']} users, {d['n_pins']} pins "
        f"(train {d['n_train']} / val {d['n_val']} / test {d['n_test']}); "
        + "C "
        + ", ".join(f"{view} {describe_C(C[view])}" for view in C)
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
            f"unknown users ({u['rotations']} rotations): below {u['threshold']:.2f} "
            f"(chosen on validation) {rejection_rates(at)} "
            f"({100 * u['test_without_rejection']['known_accuracy']:.1f}% without rejection)"
        )
    else:
        lines.append(f"unknown users: {u['skipped']}")
    if "linking" in results:  # a results.json of pinid 0.3 has none
        lines.append("account linking, split accounts: " + linking_rates(results["linking"]))
    lines.append("time: " + ", ".join(f"{stage} {s:.1f} s" for stage, s in t.items()))
    return "\n".join(lines)


def linking_rates(linking: dict) -> str:
    """Each split protocol's twin recall@1 / MRR / AUC, or why it was left out."""
    parts = []
    for protocol in ("random", "board"):
        if protocol in linking:
            m = linking[protocol]
            parts.append(f"{protocol} halves recall@1 {m['recall_at_1']:.3f}, "
                         f"MRR {m['mrr']:.3f}, AUC {m['auc']:.3f}")  # fmt: skip
        else:
            parts.append(f"{protocol} halves left out ({linking[protocol + '_skipped']})")
    return "; ".join(parts)


def rejection_rates(at: dict) -> str:
    """What a threshold does on held-out users' test pins, as ``experiment`` and ``train`` say."""
    return (
        f"{100 * at['unknown_rejected']:.1f}% of unknown users' test pins rejected, "
        f"{100 * at['known_accuracy']:.1f}% of known users' answered right"
    )


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
