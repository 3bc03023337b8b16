import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    # Tests compare floats across batch sizes; one thread keeps CPU kernels' summation order fixed.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
