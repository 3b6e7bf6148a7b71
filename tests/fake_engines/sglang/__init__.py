"""A test double of SGLang: `python -m sglang.launch_server` with tests/fake_engines on PYTHONPATH."""

__version__ = "0.0.0-fake"
