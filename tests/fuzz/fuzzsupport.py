"""Bounded hypothesis settings shared by the fuzz targets.

With the default example counts each target file keeps to roughly 30-45 s. `CI` in the environment makes
the run derandomized (the same examples every run, so CI is reproducible). To hunt for bugs, scale the
counts up and vary the seed:

    FUZZ_SCALE=10 .venv/bin/pytest tests/fuzz -m fuzz --hypothesis-seed=7

`FUZZ_EXAMPLES_<NAME>` sets one test's count. A failing example is printed by hypothesis; save its input
under fixtures/fuzz/ with a test in test_fuzz_regressions.py.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

# hypothesis caches (constants, unicode tables) go to the temp dir, not to .hypothesis/ in the working tree
set_hypothesis_home_dir(os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY")
                        or Path(tempfile.gettempdir()) / "maillab-hypothesis")

FUZZ_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "fuzz"
CI = bool(os.environ.get("CI"))


def fuzz_settings(name: str, default_examples: int) -> settings:
    """`FUZZ_EXAMPLES_<NAME>` overrides the example count; `FUZZ_SCALE` multiplies every default."""
    scaled = round(default_examples * float(os.environ.get("FUZZ_SCALE", "1")))
    examples = int(os.environ.get(f"FUZZ_EXAMPLES_{name.upper()}", scaled))
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=CI,
        database=None,  # nothing written into the tree; failures are printed, then saved as fixtures by hand
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                               HealthCheck.function_scoped_fixture, HealthCheck.large_base_example],
        print_blob=True,
    )
