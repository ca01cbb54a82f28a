"""Process facts from /proc (Linux): resident memory, children, who listens on a port."""

from __future__ import annotations

import os
import threading
from pathlib import Path

PROC = Path("/proc")


def rss_bytes(pid: int) -> int | None:
    """VmRSS of `pid`, or None once it is gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def _ppid(pid: int) -> int | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[1])


def _pids() -> list[int]:
    return [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]


def children(pid: int) -> list[int]:
    return [p for p in _pids() if _ppid(p) == pid]


def listening_pid(port: int, host: str = "127.0.0.1") -> int | None:
    """The process that owns the listening socket on host:port and whose parent does not also
    hold it: for gunicorn, the master (its workers inherit the socket)."""
    a, b, c, d = (int(x) for x in host.split("."))
    local = f"{d:02X}{c:02X}{b:02X}{a:02X}:{port:04X}"
    inode = None
    for line in (PROC / "net" / "tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[3] == "0A":  # 0A: LISTEN
            inode = fields[9]
            break
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    holders = set()
    for pid in _pids():
        try:
            fds = os.listdir(PROC / str(pid) / "fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(PROC / str(pid) / "fd" / fd) == target:
                    holders.add(pid)
                    break
            except OSError:
                continue
    roots = [pid for pid in holders if _ppid(pid) not in holders]
    return roots[0] if len(roots) == 1 else None


class RssSampler:
    """Samples the resident memory of a process's children in a thread; reports the largest
    growth of any one child over its RSS when sampling started."""

    def __init__(self, parent: int, interval: float = 0.05) -> None:
        self.parent = parent
        self.interval = interval
        self.baseline: dict[int, int] = {}
        self.peak: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        for pid in children(self.parent):
            rss = rss_bytes(pid)
            if rss is not None:
                self.baseline[pid] = self.peak[pid] = rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for pid in self.baseline:
                rss = rss_bytes(pid)
                if rss is not None and rss > self.peak[pid]:
                    self.peak[pid] = rss

    @property
    def growth(self) -> int:
        return max((self.peak[p] - self.baseline[p] for p in self.baseline), default=0)


# --- CPU time -----------------------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # Fields from 3 on (state, ppid, ...): index 0 here is field 3 of proc(5).
    return stat.rsplit(")", 1)[1].split()


def cpu_seconds(pid: int, *, reaped: bool = True) -> float:
    """utime + stime of `pid` (all its threads), plus, with `reaped`, cutime + cstime: what its
    children that have exited and been waited for used. 0 once it is gone."""
    f = _stat_fields(pid)
    if f is None:
        return 0.0
    ticks = int(f[11]) + int(f[12])  # utime, stime (fields 14, 15)
    if reaped:
        ticks += int(f[13]) + int(f[14])  # cutime, cstime (fields 16, 17)
    return ticks / TICK


def tree(root: int) -> list[int]:
    """`root` and all its descendants alive now."""
    parents: dict[int, list[int]] = {}
    for pid in _pids():
        ppid = _ppid(pid)
        if ppid is not None:
            parents.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, ()))
    return out


def tree_cpu_seconds(root: int) -> float:
    """CPU of a whole process tree, including children that exited: a pool process that died
    during a run took its time into its parent's cutime, so the difference of two readings is
    what the tree used in between (a child counted in the first reading is counted again, in
    its parent, only for what it used after it)."""
    return sum(cpu_seconds(pid) for pid in tree(root))


def cmdline(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (every core, everyone's processes), from
    /proc/stat: idle and iowait are left out."""
    fields = [int(x) for x in (PROC / "stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / TICK
