"""The embedded single-machine runner: tiny Qwen2 / SmolLM2, code-generated tasks, RRL vs baseline."""
