"""Child processes: started in their own process group, measured, and always ended.

CPU and peak RSS of a contender come from the kernel: `/proc/<pid>/stat` and VmHWM in
`/proc/<pid>/status`, sampled while it runs, and `wait4`'s rusage for its total CPU when it has
ended. Not `ru_maxrss`: Linux carries the high-water mark across exec, so a child forked from
the harness would report at least the harness's own RSS. Nothing here needs psutil.
"""

import contextlib
import ctypes
import os
import resource
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG: Final = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends it SIGTERM when the harness dies, even
    by SIGKILL, so no endpoint or contender outlives a harness that had no chance to clean up."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process, or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; the fields follow the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def peak_rss_bytes(pid: int) -> int | None:
    """VmHWM (peak resident set) of a live process, or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # kB
    return None


@dataclass(frozen=True, slots=True)
class Ended:
    """How a child ended: exit code (negative: killed by that signal) and its CPU seconds."""

    exit_code: int
    cpu_s: float
    ended_at: float


class Child:
    """A subprocess in its own process group; its output goes to a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log_path: Path,
        keep_stdin: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.started_at = time.time()
        self._log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 (closed in `_reaped`)
        self._popen = subprocess.Popen(
            self.argv,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.PIPE if keep_stdin else subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: we can end it and its children
            # preexec_fn is safe here: children are only started from the event loop's thread.
            preexec_fn=_die_with_parent,
        )
        self.pid = self._popen.pid
        self.ended: Ended | None = None
        self.peak_rss_bytes = 0
        """The largest VmHWM seen by `sample`."""
        self._terminated = False

    def poll(self) -> Ended | None:
        """Reap the child if it has ended (without blocking); its `Ended` or None."""
        if self.ended is not None:
            return self.ended
        pid, status, usage = os.wait4(self.pid, os.WNOHANG)
        if pid == 0:
            return None
        return self._reaped(status, usage)

    def sample(self) -> float | None:
        """Note the peak RSS so far; return the CPU seconds so far (None once it is gone)."""
        if self.ended is not None:
            return self.ended.cpu_s
        peak = peak_rss_bytes(self.pid)
        if peak is not None:
            self.peak_rss_bytes = max(self.peak_rss_bytes, peak)
        return cpu_seconds(self.pid)

    def cpu_s(self) -> float | None:
        """CPU seconds so far (from rusage once ended)."""
        return self.ended.cpu_s if self.ended is not None else cpu_seconds(self.pid)

    def signal(self, signum: int) -> None:
        """Send a signal to the child's process group, unless it was reaped already."""
        if self.ended is None:
            self._terminated = self._terminated or signum == signal.SIGTERM
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signum)

    def terminate(self) -> None:
        """SIGTERM once: a second one means "abandon at once" to relay."""
        if not self._terminated:
            self.signal(signal.SIGTERM)

    def stop(self, grace_s: float = 5.0) -> Ended:
        """SIGTERM the group, SIGKILL it after `grace_s`, and reap the child."""
        if self.ended is not None:
            return self.ended
        if self._popen.stdin is not None:
            with contextlib.suppress(OSError):
                self._popen.stdin.close()
        self.terminate()
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if (ended := self.poll()) is not None:
                return ended
            time.sleep(0.02)
        self.signal(signal.SIGKILL)
        for _ in range(500):  # SIGKILL cannot be ignored; 5 s is far more than it takes
            if (ended := self.poll()) is not None:
                return ended
            time.sleep(0.01)
        raise RuntimeError(f"{self.name} (pid {self.pid}) did not end after SIGKILL")

    def send_line(self, line: str) -> None:
        """Write one line to the child's stdin (started with `keep_stdin`)."""
        if self._popen.stdin is None:
            raise RuntimeError(f"{self.name} was started without a stdin to write to")
        self._popen.stdin.write(line.encode() + b"\n")
        self._popen.stdin.flush()

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the child's output."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _reaped(self, status: int, usage: resource.struct_rusage) -> Ended:
        code = os.waitstatus_to_exitcode(status)
        self._popen.returncode = code  # reaped here, not by Popen: tell it
        self.ended = Ended(
            exit_code=code,
            cpu_s=usage.ru_utime + usage.ru_stime,
            ended_at=time.time(),
        )
        self._log.close()
        if self._popen.stdin is not None:
            with contextlib.suppress(OSError):
                self._popen.stdin.close()
        return self.ended


class Children:
    """Every child started through it is stopped when the block ends, however it ends."""

    def __init__(self) -> None:
        self._children: list[Child] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log_path: Path,
        keep_stdin: bool = False,
    ) -> Child:
        """Start and remember a child (see `Child`)."""
        child = Child(name, argv, env=env, cwd=cwd, log_path=log_path, keep_stdin=keep_stdin)
        self._children.append(child)
        return child

    def stop_all(self) -> None:
        """Stop every child still running, newest first."""
        for child in reversed(self._children):
            with contextlib.suppress(Exception):
                child.stop(grace_s=3.0)

    @contextlib.contextmanager
    def scope(self) -> Iterator["Children"]:
        """`with Children().scope() as children:` — everything started is ended on the way out."""
        try:
            yield self
        finally:
            self.stop_all()


def wait_for_line(child: Child, prefix: str, timeout_s: float = 30.0) -> str:
    """The first line of the child's output that starts with `prefix` (e.g. "... listening on")."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            for line in child.log_path.read_text(errors="replace").splitlines():
                if line.startswith(prefix):
                    return line
        if child.poll() is not None:
            raise RuntimeError(f"{child.name} exited early:\n{child.log_tail()}")
        time.sleep(0.05)
    raise RuntimeError(
        f"{child.name} did not say {prefix!r} in {timeout_s:g}s:\n{child.log_tail()}"
    )
