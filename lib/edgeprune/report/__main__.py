"""``python -m edgeprune.report index [--reports reports] [--tables results/tables]``: write reports/index.html."""

from __future__ import annotations

import argparse

from edgeprune.paths import from_root
from edgeprune.report.html import write_index


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m edgeprune.report", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    index = sub.add_parser("index", help="write the HTML index of the executed notebooks and tables")
    index.add_argument("--reports", default="reports", help="folder of executed notebooks (HTML)")
    index.add_argument("--tables", default="results/tables", help="folder of the 90/91 tables")
    index.add_argument("--out", default=None, help="output file (default <reports>/index.html)")
    args = parser.parse_args(argv)
    path = write_index(from_root(args.reports), from_root(args.tables), from_root(args.out) if args.out else None)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
