"""Retrospective Replay (RRL) for OpenRLHF.

`openrlhf_rrl.core` is the algorithm and imports nothing from OpenRLHF; the runner and the
OpenRLHF glue sit on top of it.
"""

__version__ = "0.1.0"

# The one place that says which OpenRLHF releases the plugin supports.
SUPPORTED_OPENRLHF_VERSIONS = ("0.11.2",)
