import pytest
import torch

# One intra-op thread: the tests' tensors are small, and on a 2-core CI box with other work running, torch's
# thread pool makes them several times slower (measured: an uncoded BPSK sweep 32 s with 2 threads, 1.9 s with 1).
torch.set_num_threads(1)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    """Run a test on every available device (CPU always; CUDA when present)."""
    return request.param
