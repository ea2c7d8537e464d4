import pytest
import torch

from pneumoscope.device import resolve_device
from pneumoscope.errors import PneumoscopeError


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("bad", ["tpu", "cuda:x", "gpu0"])
def test_unknown_device_is_one_clear_error(bad):
    with pytest.raises(PneumoscopeError, match="device"):
        resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_says_so():
    with pytest.raises(PneumoscopeError, match="no CUDA GPU"):
        resolve_device("cuda:0")
