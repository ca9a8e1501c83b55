"""The two errors a user of RRL can cause, each with a one-line message that names its source.

A bad flag names the flag, a bad buffer file names the file: the user should know what to fix
without reading a traceback.
"""


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


class RRLConfigError(ValueError):
    """A flag or option has a bad value: "--rrl_replay_share: expected ..., got 1.5"."""

    def __init__(self, message: str):
        super().__init__(_one_line(message))


class BufferFileError(RuntimeError):
    """A buffer file cannot be read: "<path>: truncated buffer file (...)". The file is left as it is."""

    def __init__(self, message: str):
        super().__init__(_one_line(message))
