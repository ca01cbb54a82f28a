"""The hosts of deploy/scale/topology.toml as Linux network namespaces on one bridge, and the
processes started in them. Nothing here knows attachd: it builds hosts, starts and signals
processes, cuts links, and takes everything down again.

Every name it creates starts with PREFIX, every address is in the topology's subnet and lives
only inside the namespaces (and on the bridge), so `teardown()` can find and remove all of it
even after a crash, and nothing is ever sent beyond this machine.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
TOPOLOGY = HERE / "topology.toml"
PREFIX = "asc-"  # attachd scale: namespaces, links, the bridge
BRIDGE = f"{PREFIX}br0"
NETNS_ETC = Path("/etc/netns")
SBIN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    services: dict[str, str]  # service name -> kind

    @property
    def netns(self) -> str:
        return PREFIX + self.name

    @property
    def link(self) -> str:
        # The bridge side of the host's veth pair (interface names are at most 15 bytes).
        return (PREFIX + "v-" + self.name)[:15]


@dataclass(frozen=True)
class Topology:
    subnet: str
    client: str
    ports: dict[str, int]
    hosts: dict[str, Host]

    def of_kind(self, kind: str) -> list[Host]:
        return [h for h in self.hosts.values() if kind in h.services.values()]

    def service_host(self, service: str) -> Host:
        return next(h for h in self.hosts.values() if service in h.services)


def load_topology(path: Path = TOPOLOGY) -> Topology:
    raw = tomllib.loads(path.read_text())
    hosts = {
        name: Host(name, h["address"], dict(h["services"])) for name, h in raw["hosts"].items()
    }
    net = ipaddress.ip_network(raw["subnet"])
    for addr in [raw["client"], *(h.address for h in hosts.values())]:
        if ipaddress.ip_address(addr) not in net:
            raise ValueError(f"{addr} is outside the topology's subnet {net}")
    return Topology(raw["subnet"], raw["client"], dict(raw["ports"]), hosts)


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


class Rig:
    """Hosts and the processes in them. Use as a context manager: teardown runs on any exit."""

    def __init__(self, topology: Topology, root: Path) -> None:
        self.topo = topology
        self.root = root
        self.procs: dict[str, tuple[Host, subprocess.Popen[bytes]]] = {}

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    # --- hosts ---------------------------------------------------------------------------------

    def build(self) -> None:
        teardown_leftovers()  # a previous run killed before its teardown
        net = ipaddress.ip_network(self.topo.subnet)
        for line in sh("ip", "-o", "route", "show").stdout.splitlines():
            dest = line.split()[0]
            if dest != "default" and ipaddress.ip_network(dest, strict=False).overlaps(net):
                raise RuntimeError(f"{net} is already routed on this machine ({line}); refusing")
        self.root.mkdir(parents=True, exist_ok=True)
        # Every host's data in memory: MinIO's thousands of small files are written and deleted
        # in no time, and nothing outlives the run.
        sh("mount", "-t", "tmpfs", "-o", "size=8g,mode=0755", "attachd-scale", str(self.root))
        self.root.chmod(0o755)  # PostgreSQL runs as `postgres` under it
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{self.topo.client}/{net.prefixlen}", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        hosts_file = self.hosts_file()
        for host in self.topo.hosts.values():
            sh("ip", "netns", "add", host.netns)
            sh(
                "ip",
                "link",
                "add",
                host.link,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                host.netns,
            )
            sh("ip", "link", "set", host.link, "master", BRIDGE)
            sh("ip", "link", "set", host.link, "up")
            sh(
                "ip",
                "-n",
                host.netns,
                "addr",
                "add",
                f"{host.address}/{net.prefixlen}",
                "dev",
                "eth0",
            )
            sh("ip", "-n", host.netns, "link", "set", "eth0", "up")
            sh("ip", "-n", host.netns, "link", "set", "lo", "up")
            # `ip netns exec` bind-mounts /etc/netns/<ns>/hosts over /etc/hosts.
            etc = NETNS_ETC / host.netns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts_file)

    def hosts_file(self) -> str:
        lines = ["127.0.0.1 localhost"]
        for h in self.topo.hosts.values():
            names = [h.name, *(s for s in h.services if s != h.name)]
            lines.append(f"{h.address} {' '.join(names)}")
        return "\n".join(lines) + "\n"

    def link(self, host: str, up: bool) -> None:
        """Pull or plug a host's cable: its packets are dropped, nobody is told."""
        sh("ip", "link", "set", self.topo.hosts[host].link, "up" if up else "down")

    # --- processes -----------------------------------------------------------------------------

    def spawn(
        self,
        host: str,
        name: str,
        argv: list[str],
        env: dict[str, str],
        user: str | None = None,
        cwd: Path = REPO,
    ) -> subprocess.Popen[bytes]:
        h = self.topo.hosts[host]
        log_dir = self.root / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        env = {"PATH": SBIN_PATH, **env}
        cmd = ["ip", "netns", "exec", h.netns]
        if user:
            cmd += _as_user(user)
        out = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(
            [*cmd, *argv],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        self.procs[name] = (h, proc)
        return proc

    def run(
        self,
        host: str,
        argv: list[str],
        env: dict[str, str],
        user: str | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        env = {"PATH": SBIN_PATH, **env}
        cmd = ["ip", "netns", "exec", self.topo.hosts[host].netns]
        if user:
            cmd += _as_user(user)
        return subprocess.run(
            [*cmd, *argv],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def send(self, name: str, sig: int = signal.SIGKILL, group: bool = True) -> None:
        _, proc = self.procs[name]
        try:
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except ProcessLookupError:
            pass

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if name not in self.procs:
            return
        _, proc = self.procs[name]
        self.send(name, sig, group=sig != signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.send(name, signal.SIGKILL)
            proc.wait(10)
        with _quiet():
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers of its group
        del self.procs[name]

    def log(self, name: str) -> Path:
        return self.root / "log" / f"{name}.log"

    def teardown(self) -> None:
        # Everything is thrown away: no process is owed a clean shutdown.
        for name in list(self.procs):
            with _quiet():
                self.send(name, signal.SIGKILL)
        for _, proc in self.procs.values():
            with _quiet():
                proc.wait(10)
        self.procs.clear()
        teardown_leftovers()
        if self.root.is_mount():
            sh("umount", "--lazy", str(self.root), check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def _as_user(user: str) -> list[str]:
    # setpriv execs (runuser forks and stays the parent): a signal reaches the process itself.
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


def teardown_leftovers() -> None:
    """Whatever carries our prefix: processes still in our namespaces (daemons that detached
    themselves, such as clamd), the namespaces, their /etc/netns entries, the bridge."""
    names = [n.split()[0] for n in sh("ip", "netns", "list", check=False).stdout.splitlines()]
    ours = [n for n in names if n.startswith(PREFIX)]
    for ns in ours:
        for _ in range(50):
            pids = [int(p) for p in sh("ip", "netns", "pids", ns, check=False).stdout.split()]
            if not pids:
                break
            for pid in pids:
                with _quiet():
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        sh("ip", "netns", "del", ns, check=False)
    for etc in NETNS_ETC.glob(PREFIX + "*") if NETNS_ETC.exists() else []:
        shutil.rmtree(etc, ignore_errors=True)
    # The hosts' data: tmpfs mounts named attachd-scale (Rig.build), with their directories.
    for line in Path("/proc/mounts").read_text().splitlines():
        source, target = line.split()[:2]
        if source == "attachd-scale":
            sh("umount", "--lazy", target, check=False)
            shutil.rmtree(target, ignore_errors=True)
    links = sh("ip", "-o", "link", "show", check=False).stdout.splitlines()
    for line in links:
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(PREFIX):
            sh("ip", "link", "del", name, check=False)


def wait(check: Callable[[], Any], what: str, timeout: float = 60) -> None:
    """Until check() is true (an exception counts as not yet); RuntimeError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:  # noqa: S110 - not up yet
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:.0f}s")
        time.sleep(0.3)
