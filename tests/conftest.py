"""Test-wide settings: no test may reach the Hugging Face hub."""

import os

# Set before huggingface_hub is imported (it reads the variable once), so that a test run outside
# the Makefile is offline too.
os.environ["HF_HUB_OFFLINE"] = "1"
