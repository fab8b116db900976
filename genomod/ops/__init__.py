"""Operators: plain PyTorch references (``reference``) beside fused kernels and the attention dispatch."""
