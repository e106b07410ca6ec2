"""QuantKit's errors as Python exceptions: every error carries the stable code (docs/ERRORS.md),
the message and what to do, as the command-line tool prints them."""
import re


class QuantKitError(Exception):
    """An error with a stable QuantKit code (``QK2118``, ``QK8002``, ...).

    ``code`` is the code, ``message`` what went wrong (naming the file, node or tensor) and
    ``fix`` what to do; ``str(e)`` is ``"QKnnnn message; fix"`` as the CLI prints it."""

    def __init__(self, code, message, fix=""):
        self.code = code
        self.message = message
        self.fix = fix
        super().__init__(f"{code} {message}" + (f"; {fix}" if fix else ""))

    @classmethod
    def from_stderr(cls, stderr, returncode):
        """The error the binary printed (``error: QKnnnn message; fix``), or QK8004 with its
        last lines when it printed none."""
        for line in reversed(stderr.splitlines()):
            m = re.match(r"error: (QK\d{4}) (.*)$", line)
            if m:
                message, _, fix = m.group(2).partition("; ")
                return cls(m.group(1), message, fix)
        tail = " | ".join(stderr.strip().splitlines()[-5:])
        return cls("QK8004", f"the quantkit binary exited with status {returncode} without a coded error ({tail or 'no output'})",
                   "run the same command with the CLI to see its full output, and report it if it is an internal failure")
