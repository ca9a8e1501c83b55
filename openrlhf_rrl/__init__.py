"""Retrospective Replay (RRL) for OpenRLHF.

`openrlhf_rrl.core` is the algorithm and imports nothing from OpenRLHF; the runner and the
OpenRLHF glue sit on top of it.
"""

__version__ = "0.1.0"

# The one place that says which OpenRLHF releases the plugin supports.
SUPPORTED_OPENRLHF_VERSIONS = ("0.11.2",)


def unsupported_openrlhf() -> str | None:
    """What is wrong with the installed OpenRLHF for this plugin ("not installed", "0.9.0 is installed"),
    or None when it is a supported release. The launcher and the CPU mode both ask here."""
    import importlib.metadata

    try:
        version = importlib.metadata.version("openrlhf")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
    return None if version in SUPPORTED_OPENRLHF_VERSIONS else f"{version} is installed"
