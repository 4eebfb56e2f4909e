"""Test-session settings shared by the suite (tests/) and the doctests (skimpact/)."""

import os

import jax
import pytest

#: Memory maps of this process above which compiled programs are dropped after a test.
_MAPS_LIMIT = 30_000
_MAPS = "/proc/self/maps"


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each module.

    Every XLA executable on CPU holds memory maps; a worker running hundreds of fits of
    different shapes reached the kernel's limit (vm.max_map_count, 65,530) and XLA
    crashed with a segmentation fault while compiling the next program.
    """
    yield
    jax.clear_caches()


@pytest.fixture(autouse=True)
def _release_compiled_programs_when_maps_pile_up():
    """Within a module, drop them after a test that left more than ``_MAPS_LIMIT`` maps
    (scikit-learn's estimator checks fit hundreds of shapes in one module)."""
    yield
    if os.path.exists(_MAPS):
        with open(_MAPS) as f:
            if sum(1 for _ in f) > _MAPS_LIMIT:
                jax.clear_caches()
