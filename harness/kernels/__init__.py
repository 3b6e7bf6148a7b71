"""Kernels a server can be given in place of its own (harness.kernels.selection)."""
