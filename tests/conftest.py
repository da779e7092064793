import numpy as np
import pytest
from hypothesis import settings

# Numba compiles on first use; a deadline would count compilation as test time.
settings.register_profile("vq", deadline=None, max_examples=40, derandomize=True)
settings.load_profile("vq")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
