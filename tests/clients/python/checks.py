"""What every client script of the client matrix shares: counting checks, running a group of
checks where an exception fails only that group, and comparing values with the oracle's.

A script prints `<name>: N checks passed` and exits 0 (`finish`), or lists its failures and
exits 1. tests/client_matrix.rs runs the scripts and looks for that line.
"""

import math
import sys
import traceback
from decimal import Decimal

passed = 0
failures = []


def check(name, ok, detail=""):
    """Counts one check; remembers a failure with its detail."""
    global passed
    if ok:
        passed += 1
    else:
        failures.append(f"{name}: {detail}")


def same(name, got, want):
    check(name, got == want, f"tidemark {got!r}\n    oracle   {want!r}")


def group(name, on_error=None):
    """Runs a group of checks at once; an exception fails the group (the others still run)."""

    def wrap(fn):
        try:
            fn()
        except Exception:  # noqa: BLE001 - any error is a failed check
            failures.append(f"{name}: raised\n{traceback.format_exc()}")
            if on_error is not None:
                try:
                    on_error()
                except Exception:  # noqa: BLE001
                    pass
        return fn

    return wrap


def cell_equal(got, want):
    """A value against the oracle's: floats within a relative 1e-9, Decimals equal and with the
    same scale, everything else equal and of the same type."""
    if isinstance(want, float):
        if not isinstance(got, float):
            return False
        if math.isnan(want):
            return math.isnan(got)
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(want, Decimal):
        return (isinstance(got, Decimal) and got == want
                and got.as_tuple().exponent == want.as_tuple().exponent)
    return type(got) is type(want) and got == want


def same_rows(name, got, want):
    """Rows equal cell by cell; the failure names the first difference."""
    got, want = [tuple(r) for r in got], [tuple(r) for r in want]
    if len(got) != len(want):
        check(name, False, f"{len(got)} rows from tidemark, {len(want)} from the oracle")
        return
    for i, (g, w) in enumerate(zip(got, want)):
        if len(g) != len(w) or not all(cell_equal(a, b) for a, b in zip(g, w)):
            check(name, False, f"row {i}: tidemark {g!r}\n    oracle   {w!r}")
            return
    check(name, True)


def on_events(sql):
    return sql.replace("{T}", "events")


def on_oracle(sql):
    return sql.replace("{T}", "events_oracle")


def finish(name):
    """Prints the result line and exits."""
    if failures:
        print(f"{name}: {len(failures)} failed, {passed} passed")
        for f in failures:
            print(f"FAIL {f}")
        sys.exit(1)
    print(f"{name}: {passed} checks passed")
    sys.exit(0)
