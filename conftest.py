"""Test-session settings shared by the suite (tests/) and the doctests (skimpact/)."""

import jax
import pytest


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each module.

    Every XLA executable on CPU holds memory maps; a worker running hundreds of fits of
    different shapes reached the kernel's limit (vm.max_map_count, 65,530) and XLA
    crashed with a segmentation fault while compiling the next program.
    """
    yield
    jax.clear_caches()
