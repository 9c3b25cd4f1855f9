"""The report of a run: the paper's tables and figures as PNG/SVG files and one HTML page."""

from pinid.report.page import write_report

__all__ = ["write_report"]
