"""Crafter's monitoring routes, which need no token: dependency status and version."""

from __future__ import annotations

import platform
import sys
import time

import falcon

from api.ports import Check
from core import package_version
from core.errors import AttachdError


class StatusResource:
    def __init__(self, checks: dict[str, Check]) -> None:
        self.checks = checks

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        report = {}
        healthy = True
        for name, check in self.checks.items():
            started = time.perf_counter()
            entry: dict[str, object]
            try:
                check()
                entry = {"status": "up"}
            except (AttachdError, OSError) as exc:
                healthy = False
                entry = {"status": "down", "error": str(exc)}
            entry["latencyMs"] = round((time.perf_counter() - started) * 1000, 2)
            report[name] = entry
        resp.media = {"status": "up" if healthy else "down", "dependencies": report}
        resp.status = falcon.HTTP_200 if healthy else falcon.HTTP_503
        if not healthy:
            resp.set_header("Retry-After", "5")


class VersionResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {
            "packageName": "attachd",
            "packageVersion": package_version(),
            "osName": platform.system(),
            "osVersion": platform.release(),
            "osArch": platform.machine(),
            "pythonVersion": sys.version.split()[0],
        }
