"""``python -m edgeprune.power calibrate`` prints the calibration table; ``probe`` lists the meters here."""

from __future__ import annotations

import argparse
import sys

from edgeprune.power.meters import best_meter


def _calibrate(args: argparse.Namespace) -> int:
    from edgeprune.power.calibration import calibration_table, fit_profile, free_parameters

    table = calibration_table(args.profile, leave_one_out=not args.no_loo)
    names = list(dict.fromkeys(table["profile"]))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    worst = max(table["ratio"].max(), 1 / table["ratio"].min())
    print(f"\nworst in-sample miss: {worst:.2f}x (the model is not done above 2x)")
    if args.fit:
        for name in names:
            fitted = fit_profile(name)
            print(f"\nfitted constants for {name} (paste into edgeprune/devices/{name}.yaml):")
            for section, key, field in free_parameters(fitted):
                print(f"  {section}.{key}.{field} = {getattr(getattr(fitted, section)[key], field).value}")
    return 0 if worst <= 2 else 1


def _probe(args: argparse.Namespace) -> int:
    meter, skipped = best_meter(args.sysfs_root)
    for backend, why in skipped.items():
        print(f"{backend}: unavailable ({why})")
    print(f"best meter: {meter.source if meter else 'none: latency can be measured here, power cannot'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeprune.power", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    cal = sub.add_parser("calibrate", help="modelled vs published latency of each calibration point")
    cal.add_argument("--profile", action="append", help="profile name (repeatable; default: every calibrated one)")
    cal.add_argument("--fit", action="store_true", help="also print the constants a fresh fit gives")
    cal.add_argument("--no-loo", action="store_true", help="skip the leave-one-out column")
    cal.set_defaults(run=_calibrate)
    probe = sub.add_parser("probe", help="which power meter this machine offers, and why the others are not")
    probe.add_argument("--sysfs-root", default="/sys")
    probe.set_defaults(run=_probe)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
