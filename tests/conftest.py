"""Suite-wide settings: tests run in parallel workers (pytest-xdist), so each uses one torch thread."""

import torch

torch.set_num_threads(1)
