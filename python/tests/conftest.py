"""Shared fixtures: a printed seed for every test that draws random inputs, and the test
folder on PYTHONPATH so that Flower's Ray workers can import the test app."""

import os
import random
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in [HERE, os.environ.get("PYTHONPATH", "")] if p
)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture
def rng(request):
    """A NumPy generator from a fresh seed (or SECAGG_TEST_SEED), printed on failure."""
    seed = int(os.environ.get("SECAGG_TEST_SEED", random.SystemRandom().randrange(2**32)))
    print(f"{request.node.name}: seed {seed} (rerun with SECAGG_TEST_SEED={seed})")
    return np.random.default_rng(seed)


def flower_or_skip():
    """Imports flwr; a missing Flower fails the run when SECAGG_REQUIRE_FLOWER=1 (the
    README's test command sets it) and skips otherwise."""
    try:
        import flwr  # noqa: F401
    except ImportError:
        if os.environ.get("SECAGG_REQUIRE_FLOWER") == "1":
            pytest.fail("flwr is not installed but SECAGG_REQUIRE_FLOWER=1")
        pytest.skip("flwr is not installed (pip install 'secagg[flower]')")
