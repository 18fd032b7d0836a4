import pytest


@pytest.fixture(scope="module")
def single_torch_thread():
    """Tiny nets: one intra-op thread is as fast and much more robust on a shared 2-core box."""
    import torch
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)
