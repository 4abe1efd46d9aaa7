"""The papers' tables, the claims check, the statistics and the HTML report (stages 90 and 91).

:mod:`~edgeprune.report.collect` reads the method stages' outputs back,
:mod:`~edgeprune.report.evidence` turns them into a measurement per claim,
:mod:`~edgeprune.report.tables` builds and writes the tables,
:mod:`~edgeprune.report.analysis` runs the t-tests and regressions,
:mod:`~edgeprune.report.reference` snapshots and reads the committed reference run, and
:mod:`~edgeprune.report.html` writes ``reports/index.html``.
"""

from edgeprune.report import figures, html, reference, tables
from edgeprune.report.collect import METHOD_STAGES, Results, load_results
from edgeprune.report.html import write_index
from edgeprune.report.tables import build_all, write_table

__all__ = [
    "METHOD_STAGES", "Results", "build_all", "figures", "html", "load_results", "reference", "tables", "write_index",
    "write_table",
]  # fmt: skip
