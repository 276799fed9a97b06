"""Reports in Jupyter (moved to `symbn.jupyter`, which needs no document renderer)."""

from ..jupyter import report_latex, report_markdown

__all__ = ["report_latex", "report_markdown"]
