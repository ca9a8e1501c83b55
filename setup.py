"""openrlhf-rrl: Retrospective Replay (arXiv 2504.14363) for OpenRLHF."""

from setuptools import find_packages, setup

setup(
    name="openrlhf-rrl",
    version="0.1.0",
    description="Retrospective Replay (RRL) for OpenRLHF: restart RL rollouts from retained promising prefixes",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["openrlhf_rrl", "openrlhf_rrl.*"]),
    install_requires=["torch", "numpy"],
    extras_require={
        # The embedded runner (tiny Qwen2 / SmolLM2 on transformers, plots, OpenRLHF's loss math).
        "runner": ["transformers==5.19.0", "tokenizers", "safetensors", "matplotlib", "tqdm"],
        "test": ["pytest", "hypothesis"],
    },
    entry_points={
        "console_scripts": [
            "rrl-demo=openrlhf_rrl.runner.cli:main",
            "rrl-inspect=openrlhf_rrl.inspect_cli:main",
        ]
    },
)
