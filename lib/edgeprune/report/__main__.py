"""``python -m edgeprune.report index | reference``: the HTML index, or a reference-run snapshot.

- ``index [--reports reports] [--tables results/tables]``: write reports/index.html;
- ``reference --results DIR [--out results/reference] [--params DIR/params.yaml]``: copy a finished
  reference run's small outputs and its provenance (commit, params, machine) to ``--out``.
"""

from __future__ import annotations

import argparse

from edgeprune.paths import from_root
from edgeprune.report.html import write_index
from edgeprune.report.reference import snapshot


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m edgeprune.report", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    index = sub.add_parser("index", help="write the HTML index of the executed notebooks and tables")
    index.add_argument("--reports", default="reports", help="folder of executed notebooks (HTML)")
    index.add_argument("--tables", default="results/tables", help="folder of the 90/91 tables")
    index.add_argument("--reference", default="results/reference", help="committed reference run (its provenance line)")
    index.add_argument("--out", default=None, help="output file (default <reports>/index.html)")
    ref = sub.add_parser("reference", help="snapshot a finished reference run's small outputs into the repository")
    ref.add_argument("--results", required=True, help="the reference run's results folder")
    ref.add_argument("--out", default="results/reference", help="where the snapshot goes (replaced whole)")
    ref.add_argument("--params", default=None, help="its params file (default: <results>/../params.yaml)")
    ref.add_argument("--note", default="", help="a line saying how the run was made (sittings, threads ...)")
    args = parser.parse_args(argv)
    if args.command == "index":
        path = write_index(
            from_root(args.reports), from_root(args.tables), from_root(args.out) if args.out else None,
            reference=from_root(args.reference),
        )  # fmt: skip
        print(f"wrote {path}")
        return
    results = from_root(args.results)
    params = from_root(args.params) if args.params else results.parent / "params.yaml"
    written = snapshot(results, from_root(args.out), params, note=args.note)
    print(f"wrote {len(written)} files under {from_root(args.out)}")


if __name__ == "__main__":
    main()
