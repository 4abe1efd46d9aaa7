"""``reports/index.html``: one page that links every executed notebook and table, claims check first.

The executed notebooks are already HTML (nbconvert, in each DVC stage); this page gathers
them, maps each paper table and figure to the stage that makes it, and shows the claims
check inline, so a reader needs neither Jupyter nor the repository layout.
"""

from __future__ import annotations

import html
import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from edgeprune.io import atomic_write
from edgeprune.report.reference import describe
from edgeprune.verdicts import NOT_COMPARED

__all__ = ["PAPER_MAP", "VERDICT_COLOURS", "claims_columns", "write_index"]

PAPER_MAP: tuple[tuple[str, str, str], ...] = (
    # (paper item, what we make of it, the notebook that makes it)
    ("AKPERL Table 1 (accuracy, power, latency, sparsity)", "results/tables/papers/akperl_table1.*", "90_tables"),
    ("AKPERL DQN convergence (~200k iterations)", "convergence figure, steps to 99% of final reward", "30_akperl_dqn"),
    ("AKPERL ablation of the monitoring system", "ablations table (no input statistics / no power / uniform weights)", "30_akperl_dqn"),
    ("AKPERL dynamic behaviour under changing inputs", "accuracy over the non-stationary stream", "30_akperl_dqn"),
    ("AKPERL significance (p < 0.05)", "results/tables/stats/welch.*", "91_stats"),
    ("QSA compression vs accuracy drop, CIFAR-10, vs static", "results/tables/papers/qsa_compression.*", "90_tables"),
    ("QSA ablation (quantization only / sparsity only / both)", "results/tables/papers/qsa_ablation.*", "90_tables"),
    ("QSA KL threshold and drift controller", "KL curve, stream with re-prune triggers; results/tables/papers/qsa_dynamic.*", "40_qsa"),
    ("PPO performance density vs static prune+quant", "results/tables/papers/ppo_density.*", "90_tables"),
    ("PPO lottery-ticket rewinding vs fine-tuning", "results/tables/papers/ppo_lth.*", "90_tables"),
    ("PPO per-layer policies and learning curves", "policy and learning-curve figures", "50_ppo_prune_quant"),
    ("Static baselines (L1-norm, magnitude) sweep", "results/tables/papers/baselines_sweep.*, Pareto figure", "20_baselines"),
    ("Latency and power on Raspberry Pi 4 / Jetson Nano", "results/device/power.csv (modelled unless metered)", "60_device_power"),
    ("Claims check (all three papers)", "results/tables/claims.*", "90_tables"),
    ("ANOVA, regression on pruning intensity", "results/tables/stats/anova.*, results/tables/stats/regression.*", "91_stats"),
)

VERDICT_RULE = (
    "Ours: mean ± 95% CI over seeds, at each recovery budget (SGD steps) where the claim rests on recovered networks. "
    "Reproduced / not reproduced: the whole CI on one side of the claim's threshold; partly: direction right, magnitude "
    "short, zero excluded; inconclusive: the CI spans the threshold ('detectable' is the smallest distance from it the "
    "seeds could detect at 80% power); budget-sensitive: the verdict changes with the budget, or its margin shrinks "
    "as the budget grows; not testable here: why is in the note."
)

VERDICT_COLOURS: dict[str, str] = {
    "reproduced": "#d9f2d9",
    "partly": "#fff3cd",
    "inconclusive": "#dbe9f6",
    "budget-sensitive": "#fde2c4",
    "not reproduced": "#f8d7da",
    "not testable here": "#e2e3e5",
}
"""Background of each claims-check verdict, in this page and in the 90_tables notebook."""


def _verdict_class(verdict: str) -> str:
    return "v-" + verdict.replace(" ", "-")


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
code { background: #f3f3f3; padding: 0 0.2rem; }
""" + "".join(
    f"td.{_verdict_class(v)} {{ background: {colour}; }}\n" for v, colour in VERDICT_COLOURS.items()
)


def _rel(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target, start)).as_posix()


def claims_columns(claims: pd.DataFrame) -> list[str]:
    """The claims-check columns a reader sees, in order: the claim, ours and the verdict per recovery
    budget, the verdict across budgets with its trend, the reference run's verdict beside it, the note."""
    budget_columns = [c for c in claims.columns if " @ " in c]
    reference = [c for c in ("reference ours", "reference verdict", "quick vs reference") if c in claims]
    return ["paper", "claim", "paper's number", *budget_columns, "ours", "verdict", "trend", "detectable", *reference, "note"]


def _claims_html(claims: pd.DataFrame) -> str:
    columns = [c for c in claims_columns(claims) if c in claims]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for _, row in claims.iterrows():
        cells = []
        for c in columns:
            value = str(row[c])
            coloured = value in VERDICT_COLOURS or value == "conflict"
            cls = f' class="{_verdict_class("not reproduced" if value == "conflict" else value)}"' if coloured else ""
            cells.append(f"<td{cls}>{html.escape(value)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def write_index(
    reports: str | Path,
    tables: str | Path,
    out: str | Path | None = None,
    title: str = "edgeprune report",
    reference: str | Path | None = None,
) -> Path:
    """Write the index page (default ``<reports>/index.html``) and return its path.

    ``reports`` is searched for executed notebooks (``*.html``), ``tables`` for the tables of
    the 90/91 stages (``claims.csv`` is shown inline when present); ``reference`` is the
    committed reference run, named under the claims check.
    """
    reports, tables = Path(reports), Path(tables)
    if not reports.is_dir():
        raise FileNotFoundError(f"{reports} does not exist: run `dvc repro` (or `make repro`) first")
    out = Path(out) if out is not None else reports / "index.html"
    pages = sorted(p for p in reports.rglob("*.html") if p.resolve() != out.resolve())
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by <code>python -m edgeprune.report index</code> "
             "from the pipeline's outputs. Every number comes from a run of the pipeline; columns and captions say "
             "which figures are modelled (device power) and which are measured.</p>"]  # fmt: skip
    claims = tables / "claims.csv"
    if claims.is_file():
        table = pd.read_csv(claims, keep_default_na=False)
        parts += ["<h2>Claims check</h2>", f"<p>{html.escape(VERDICT_RULE)}</p>", _claims_html(table)]
        if reference is not None and "quick vs reference" in table:
            conflicting, uncompared = (table[table["quick vs reference"] == r]["id"].tolist() for r in ("conflict", NOT_COMPARED))
            parts.append(
                f"<p>Reference verdicts: {html.escape(describe(reference))}. Conflicts (reproduced here, not reproduced "
                f"there, or the reverse): {html.escape(', '.join(conflicting) or 'none')}. Not compared (the reference "
                f"ran another version of the method; the note says which setting): {html.escape(', '.join(uncompared) or 'none')}.</p>"
            )
    parts.append("<h2>Where each paper table and figure comes from</h2><table><tr><th>paper item</th><th>here</th><th>notebook</th></tr>")
    by_stem: dict[str, list[Path]] = {}
    for page in pages:
        stem = page.parent.name if page.parent != reports else page.stem
        by_stem.setdefault(stem, []).append(page)
    for item, what, notebook in PAPER_MAP:
        links = " ".join(f'<a href="{_rel(p, out.parent)}">{html.escape(p.stem)}</a>' for p in by_stem.get(notebook, []))
        parts.append(f"<tr><td>{html.escape(item)}</td><td>{html.escape(what)}</td><td>{html.escape(notebook)} {links}</td></tr>")
    parts.append("</table><h2>Executed notebooks</h2><ul>")
    parts += [f'<li><a href="{_rel(p, out.parent)}">{html.escape(_rel(p, reports))}</a></li>' for p in pages]
    parts.append("</ul><h2>Tables</h2><ul>")
    for path in sorted(tables.rglob("*.md")) if tables.is_dir() else []:
        formats = " ".join(
            f'<a href="{_rel(path.with_suffix(s), out.parent)}">{s[1:]}</a>' for s in (".csv", ".md", ".tex") if path.with_suffix(s).is_file()
        )
        parts.append(f"<li>{html.escape(_rel(path.with_suffix(''), tables))}: {formats}</li>")
    parts.append("</ul>")
    document = f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>{"".join(parts)}</body></html>\n'
    with atomic_write(out) as tmp:
        tmp.write_text(document, encoding="utf-8")
    return out
