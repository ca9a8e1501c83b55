"""Compatibility layers that let the installed OpenRLHF import where a CUDA-only piece is missing."""
