"""The quality floors of a faster default study: a metrics table after a change against the
table before it (`featlab.floors` says what each floor holds and which rows it reads).

Prints a line per floor (PASS or FAIL, its cells, the worst one's numbers), a line per failing
cell under it, and for the floors held on one table, before's verdict; exits 1 when a floor
fails on the table after. Save the table before the change, run the study, then:

    python bench/quality_floors.py before/metrics.csv results/shapes/tables/metrics.csv
"""

import argparse
import sys

from featlab.floors import FloorSettings, read_table, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", help="the metrics table before the change (a saved copy)")
    parser.add_argument("after", help="the metrics table of a run after the change")
    parser.add_argument(
        "--ridge",
        default=FloorSettings.ridge,
        help="the ridge mapping held above the identity (floor 2; default %(default)s)",
    )
    args = parser.parse_args()
    lines, passed = report(
        read_table(args.before), read_table(args.after), FloorSettings(ridge=args.ridge)
    )
    print("\n".join(lines))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
