"""Statistics over seeds: confidence intervals, Welch t-tests with Holm correction, ANOVA, regression.

Every function takes a tidy DataFrame (one row per model, method, setting, seed ...) and the
column names to use. The maths comes from scipy and statsmodels; this package only selects
rows, validates input and names the results. Rows with a missing value (NaN) in a column a
function uses are dropped before the test, as statsmodels does with ``missing="drop"``.

Modules: :mod:`~edgeprune.stats.summary` (means, CIs and their display strings),
:mod:`~edgeprune.stats.comparisons` (Welch t-tests, Holm), :mod:`~edgeprune.stats.anova`,
:mod:`~edgeprune.stats.regression`; :mod:`~edgeprune.stats.checks` validates their input.
"""

from __future__ import annotations

from edgeprune.stats.anova import AnovaResult, anova_oneway, anova_twoway
from edgeprune.stats.comparisons import WelchResult, compare_methods, holm, holm_rows, welch_ttest
from edgeprune.stats.regression import RegressionResult, regress_on_intensity
from edgeprune.stats.summary import by_budget, format_mean_ci, format_summary, mean_ci, summarise

__all__ = [
    "AnovaResult",
    "RegressionResult",
    "WelchResult",
    "anova_oneway",
    "anova_twoway",
    "by_budget",
    "compare_methods",
    "format_mean_ci",
    "format_summary",
    "holm",
    "holm_rows",
    "mean_ci",
    "regress_on_intensity",
    "summarise",
    "welch_ttest",
]
