"""Shared pytest configuration."""
import os

import torch

# Two cores are shared by every test; keep torch from oversubscribing them.
torch.set_num_threads(int(os.environ.get("LRGAN_TEST_THREADS", "1")))
