"""Shared pytest fixtures."""
import pytest


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny tensors: one intra-op thread is several times faster than two on a shared 2-core runner.

    Also runs the module under ``torch.no_grad()``.
    """
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.no_grad():
        yield
    torch.set_num_threads(n)
