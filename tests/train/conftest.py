"""hiclip.train tests: helper modules (train_fakes, ddp_worker) importable under
--import-mode=importlib; one torch thread here (tiny models run slower with more on 2 shared cores)."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
