"""The one error type for problems the user can fix: bad data, a bad configuration, an unreachable server.

Every such error's message names the file or key, the field and what to do. The command line prints it on one
line and exits with status 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Data, configuration or network trouble the user can fix; the message says where and what to do."""
