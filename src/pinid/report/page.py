"""``report.html``: tables and figures of a run on one offline page (no JavaScript, no CDN)."""

from __future__ import annotations

import json
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from pinid._atomic import atomic_write_text
from pinid.errors import PinidError
from pinid.evaluation.experiment import BEYOND_ROWS, TABLE_ROWS
from pinid.report.figures import FINAL_MODEL, PAPER_MODEL, draw_all

METRICS = (("accuracy", "Accuracy"), ("macro_f1", "Macro-F1"), ("recall_at_10", "Recall@10"))


def _table(results: dict, rows: list[str]) -> dict:
    rows = [r for r in rows if r in results["models"]]
    best = {key: max(results["models"][r][key] for r in rows) for key, _ in METRICS}
    return {"rows": rows, "best": best}


def write_report(run_dir: str | Path) -> Path:
    """(Re)generate ``run_dir/report.html`` and ``run_dir/figures/`` from ``results.json``."""
    run_dir = Path(run_dir)
    try:
        results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PinidError(f"{run_dir}: no readable results.json ({exc})") from None
    if "analyses" not in results:
        raise PinidError(f"{run_dir}/results.json has no analyses; rerun pinid experiment")
    figures = draw_all(results, run_dir / "figures")
    env = Environment(
        loader=PackageLoader("pinid.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    html = env.get_template("report.html.j2").render(
        r=results,
        a=results["analyses"],
        figures={f.name: f for f in figures},
        table2=_table(
            results, [*TABLE_ROWS, *(m for m in results["models"] if m.startswith("cf_ref_"))]
        ),
        ablation=_table(results, list(BEYOND_ROWS)),
        metrics=METRICS,
        paper_final=PAPER_MODEL,
        final=FINAL_MODEL,
    )
    path = run_dir / "report.html"
    atomic_write_text(path, html)
    return path
