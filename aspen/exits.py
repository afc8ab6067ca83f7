"""Exit statuses shared by every Aspen command-line tool, and the guard that keeps a
traceback from reaching the user.

| status | meaning |
|--------|---------|
| 0      | done |
| 1      | the request failed (any error code, NOT_FOUND included), or a local file could not be read |
| 2      | usage: the command line cannot mean anything (argparse, INVALID_REQUEST before sending) |
| 3      | unavailable: no node answered, or no quorum (UNAVAILABLE, TIMEOUT, OVERLOADED) |
| 4      | `aspen-node` only: its storage failed (a journal fdatasync), so it stopped (OPERATIONS.md) |
| 130    | interrupted (Ctrl-C) |

`--json` changes what is printed, never the status.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from wire.errors import AspenError, ErrorCode

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_STORAGE_FAILED = 4  # aspen-node: fail-stop on a failed journal fdatasync
EXIT_INTERRUPTED = 130
# For each tool's --help.
EPILOG = ("exit status: 0 done; 1 the request failed (NOT_FOUND too) or a file could not be read; 2 usage; "
          "3 unavailable (no answer in time, no quorum); 130 interrupted. The same with --json.")
# Set to get the traceback of an unexpected failure (a bug) instead of one line.
DEBUG_ENV = "ASPEN_DEBUG"
_UNAVAILABLE = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT, ErrorCode.OVERLOADED})


def status_of(error: AspenError) -> int:
    return EXIT_UNAVAILABLE if error.code in _UNAVAILABLE else EXIT_ERROR


def fail(code: str, message: str, status: int) -> int:
    """One line on stderr, `error: CODE: message`, and the status to exit with."""
    print(f"error: {code}: {message}", file=sys.stderr)
    return status


def os_error_line(exc: OSError) -> str:
    where = f"{os.fsdecode(exc.filename)!r}: " if exc.filename is not None else ""
    return f"{where}{exc.strerror or exc}"


def guarded(body: Callable[[], int]) -> int:
    """body's status; Ctrl-C is 130 without a word, a closed stdout is quiet, and any other
    exception is one line (ASPEN_DEBUG=1 shows the traceback)."""
    try:
        return body()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `aspen-cli ... | head`: the reader left; stop writing, say nothing.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except AspenError as exc:
        return fail(str(exc.code), exc.message, status_of(exc))
    except OSError as exc:
        return fail("IO_ERROR", os_error_line(exc), EXIT_ERROR)
    except UnicodeError as exc:
        return fail("INVALID_REQUEST", f"not UTF-8: {exc}", EXIT_USAGE)
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        return fail("INTERNAL", f"{type(exc).__name__}: {exc} (a bug: {DEBUG_ENV}=1 shows where)", EXIT_ERROR)
