"""The report: files, numbers that match results.json, an offline page, and a real browser."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from pinid.cli import main
from pinid.evaluation.experiment import BEYOND_ROWS, TABLE_ROWS
from tests.browser import accessibility_violations, chromium

FIGURES = ("fig2_words_per_pin", "fig3_projections", "fig4_per_user_f1", "fig5_f1_histogram",
           "reliability", "unknown_users")  # fmt: skip

pytestmark = pytest.mark.slow  # subprocesses, clusters, experiments or a browser


@pytest.fixture(scope="module")
def run_dir(sample_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report-run")
    assert main(["experiment", "--data", str(sample_corpus), "--out", str(out)]) == 0
    return out


def _results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def test_experiment_writes_every_figure_as_png_and_svg(run_dir):
    for name in FIGURES:
        for suffix in ("png", "svg"):
            assert (run_dir / "figures" / f"{name}.{suffix}").stat().st_size > 1000


def test_results_json_holds_every_analysis(run_dir):
    analyses = _results(run_dir)["analyses"]
    assert set(analyses) == {"table1", "words_per_pin", "projections", "table3",
                             "shared_images", "confused_pairs", "reliability"}  # fmt: skip
    assert len(analyses["table1"]["users"]) == 4  # the sample has four users
    assert len(analyses["projections"]["text"]["explained_variance"]) <= 10
    assert 0 <= analyses["shared_images"]["share"] <= 1
    assert sum(b["count"] for b in analyses["reliability"]["bins"]) == 4  # four test pins


def test_page_is_offline_and_script_free(run_dir):
    html = (run_dir / "report.html").read_text()
    assert "<script" not in html.lower()
    assert not re.search(r'(src|href)="(https?:)?//', html)
    for name in FIGURES:
        assert f'src="figures/{name}.png"' in html


def test_page_numbers_come_from_results_json(run_dir):
    html = (run_dir / "report.html").read_text()
    results = _results(run_dir)
    table2 = html[html.index('id="table2"') : html.index("</table>", html.index('id="table2"'))]
    for row in TABLE_ROWS:
        m = results["models"][row]
        cells = [f"{100 * m[k]:.1f}" for k in ("accuracy", "macro_f1", "recall_at_10")]
        assert re.search(rf"<td>{re.escape(row)}</td>" + "".join(
            rf'<td class="num[^"]*">{c}</td>' for c in cells), table2), row  # fmt: skip
    for user in results["analyses"]["table1"]["users"]:
        assert f"<th>{user}</th>" in html
    calibration = html[html.index('id="calibration"') :]
    assert f"{results['calibration']['ece_after']:.3f}" in calibration
    unknown = html[html.index('id="unknown"') :]
    at = results["unknown_users"]["test_at_threshold"]
    assert f"T = {results['unknown_users']['threshold']:.2f}" in unknown
    assert f"{100 * at['unknown_rejected']:.1f}" in unknown
    linking = html[html.index('id="linking"') :]
    # four users of five clips: none has the 8 training pins a split account needs
    assert "left out: no user with 8+ training pins to split" in linking
    for pair in results["linking"]["pairs"]:
        assert f"{pair['score']:.3f}" in linking and pair["accounts"][0] in linking


def test_report_command_regenerates_and_refuses_a_folder_without_results(run_dir, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "report.html").unlink()
    shutil.rmtree(copy / "figures")
    assert main(["report", "--run", str(copy)]) == 0
    assert (copy / "report.html").read_text() == (run_dir / "report.html").read_text()
    assert main(["report", "--run", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "no readable results.json" in err and err.count("\n") == 1


def test_report_renders_in_a_real_browser(run_dir):
    browser = chromium()
    try:
        browser.get((run_dir / "report.html").as_uri())
        widths, thumbnails = browser.execute_script(
            "const w = s => Array.from(document.querySelectorAll(s))"
            "  .map(i => i.complete ? i.naturalWidth : 0);"
            "return [w('figure img'), w('#linked-pairs img')]"
        )
        rows = browser.execute_script(
            "return ['table1', 'table2', 'table3', 'ablation', 'calibration', 'unknown',"
            " 'linked-pairs']"
            ".map(id => document.getElementById(id).rows.length)"
        )
        violations = accessibility_violations(browser)
    finally:
        browser.quit()
    assert not violations, "axe-core on the report:\n" + "\n".join(violations)
    assert len(widths) == len(FIGURES) and all(w > 0 for w in widths)
    results = _results(run_dir)
    pairs = results["linking"]["pairs"]
    assert len(thumbnails) == 2 * sum(len(p["evidence"]) for p in pairs) > 0
    assert all(w > 0 for w in thumbnails)  # the model folder's thumbnails of the evidence
    n_table3 = len(results["analyses"]["table3"]["lowest"])
    n_table2 = len(TABLE_ROWS) + sum(m.startswith("cf_ref_") for m in results["models"])
    assert rows == [1 + 5, 1 + n_table2, 2 + n_table3, 1 + len(BEYOND_ROWS), 4, 3, 1 + len(pairs)]


def test_report_shows_each_measured_linking_protocol(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    results = _results(copy)
    floor = {"recall_at_1": 0.281, "mrr": 0.392, "auc": 0.794}
    results["linking"]["random"] = {
        "recall_at_1": 0.9091,
        "mrr": 0.9486,
        "auc": 0.9987,
        "accounts": 110,
        "twin_pairs": 55,
        "floor_mean_words": floor,
    }
    del results["linking"]["random_skipped"]  # fmt: skip
    (copy / "results.json").write_text(json.dumps(results))
    assert main(["report", "--run", str(copy)]) == 0
    html = (copy / "report.html").read_text()
    linking = html[html.index('id="linking"') : html.index("</table>", html.index('id="linking"'))]
    assert re.search(r"<td>random</td><td class=\"num\">110</td><td class=\"num\">55</td>"
                     r"<td class=\"num\">0\.909</td><td class=\"num\">0\.949</td>"
                     r"<td class=\"num\">0\.999</td><td class=\"num\">0\.281 / 0\.392 / 0\.794",
                     linking)  # fmt: skip
    assert '<td>board</td><td colspan="6">left out: ' in linking
