"""Runs the quantkit binary: streams calibration feeds to it, shows its progress, turns its
errors into ``QuantKitError``."""
import json
import os
import subprocess
import sys
import threading

from ._binary import binary_path
from ._errors import QuantKitError
from ._stream import batches, write_batch


class Completed:
    """What a run printed: ``stdout`` (the summary), ``warnings`` (``warning:`` lines of stderr)."""

    def __init__(self, args, stdout, stderr, warnings):
        self.args = args
        self.stdout = stdout
        self.stderr = stderr
        self.warnings = warnings


def _interactive():
    if "ipykernel" in sys.modules:
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class _Progress:
    """A tqdm bar per stage when tqdm is installed, a redrawn line of its own otherwise; only in a
    terminal or notebook unless forced."""

    def __init__(self, enabled):
        self.enabled = _interactive() if enabled is None else bool(enabled)
        self.stage = None
        self.bar = None
        try:
            import tqdm.auto as tq
            self.tqdm = tq.tqdm
        except ImportError:
            self.tqdm = None

    def update(self, event):
        if not self.enabled or "done" not in event:
            return
        stage, done, total = event["stage"], event["done"], event.get("total")
        if self.tqdm is not None:
            if stage != self.stage:
                self.close()
                self.bar = self.tqdm(desc=stage, total=total, unit=event.get("unit", "it"), leave=False)
                self.stage = stage
            self.bar.update(done - self.bar.n)
            return
        self.stage = stage
        width = 30
        bar = ""
        if total:
            filled = min(width, done * width // total)
            bar = "[" + "#" * filled + " " * (width - filled) + f"] {done}/{total}"
        else:
            bar = f"{done}"
        eta = event.get("eta_s")
        sys.stderr.write(f"\r{stage} {bar} {event.get('unit', '')}" + (f", ETA {eta:.0f} s" if eta else "") + "\x1b[K")
        sys.stderr.flush()

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.stage is not None and self.tqdm is None and self.enabled:
            sys.stderr.write("\n")
        self.stage = None


def run(args, data=None, progress=None, echo=False):
    """Runs ``quantkit ARGS`` (``--input-stream -`` added when ``data`` is given, whose feeds
    go to its standard input), with JSON progress shown as a bar. Returns ``Completed``;
    raises ``QuantKitError`` with the binary's code when it fails."""
    cmd = [binary_path(), *map(str, args)]
    if data is not None:
        cmd += ["--input-stream", "-"]
    if not any(a in ("--quiet", "--log-json") for a in cmd):
        cmd.append("--log-json")
    env = dict(os.environ)
    if "OPENBLAS_CORETYPE" not in env and _avx512():
        env["OPENBLAS_CORETYPE"] = "SkylakeX"
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, writer_error = [], []

    def read_stdout():
        for line in proc.stdout:
            text = line.decode(errors="replace")
            out.append(text)
            if echo:
                sys.stdout.write(text)

    def write_stdin():
        index = 0
        try:
            for index, feed in enumerate(batches(data)):
                write_batch(proc.stdin, feed, index)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the binary stopped reading: its own error says why
        except BaseException as e:  # the reader failed: stop the binary, report the reader's error
            writer_error.append(e)
            proc.kill()
        finally:
            try:
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass

    threads = [threading.Thread(target=read_stdout, daemon=True)]
    if data is not None:
        threads.append(threading.Thread(target=write_stdin, daemon=True))
    for t in threads:
        t.start()
    bar = _Progress(progress)
    err, warnings = [], []
    try:
        for line in proc.stderr:
            text = line.decode(errors="replace").rstrip("\n")
            if text.startswith("{"):
                try:
                    bar.update(json.loads(text))
                    continue
                except ValueError:
                    pass
            err.append(text)
            if text.startswith("warning: "):
                warnings.append(text[len("warning: "):])
    except KeyboardInterrupt:
        proc.kill()
        raise
    finally:
        bar.close()
    code = proc.wait()
    for t in threads:
        t.join()
    stderr = "\n".join(err)
    if writer_error:
        e = writer_error[0]
        if isinstance(e, QuantKitError):
            raise e
        raise QuantKitError("QK8003", f"the calibration data reader raised {type(e).__name__}: {e}",
                            "fix the reader; QuantKit stopped without writing any output") from e
    if code != 0:
        raise QuantKitError.from_stderr(stderr, code)
    return Completed(cmd, "".join(out), stderr, warnings)


def _avx512():
    """Debian's OpenBLAS 0.3.21 does not know Zen 4/5 and falls back to Haswell kernels:
    force SkylakeX where AVX-512 is there (as scripts/openblas-coretype.sh does)."""
    try:
        with open("/proc/cpuinfo") as f:
            return "avx512f" in f.read(1 << 16)
    except OSError:
        return False
