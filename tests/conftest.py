"""Test-wide settings: small tensor ops run fastest, and reproducibly, on one thread."""

import os

import torch

os.environ.setdefault("METAREC_QUIET", "1")
torch.set_num_threads(1)
