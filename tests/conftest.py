"""Test-wide settings: no test may reach the Hugging Face hub. The tiny study's shared run, and a
fixture that keeps torch on one thread."""

import os

import pytest
from tiny_study import run_tiny_study

# Set before huggingface_hub is imported (it reads the variable once), so that a test run outside
# the Makefile is offline too.
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def study(tmp_path_factory) -> dict:
    """A copy of the workflow, its full plan, and one complete run of the tiny study, shared by
    the workflow tests and the report's browser test (one run of about two minutes for both)."""
    return run_tiny_study(tmp_path_factory.mktemp("workflow"))


@pytest.fixture
def one_torch_thread():
    """torch on one CPU thread during the test (tiny models: threads only add scheduling noise)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
