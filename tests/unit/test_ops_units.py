"""Pure parts of the operations code: signature parsing, pool settings, JSON log
lines, operator auth, and the commands that start workers and Flower."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import replace

import falcon
import pytest
from falcon import testing

from api.operator import OperatorAuth
from attachd.fleet import FleetStatus, TaskRef, WorkerState, render
from attachd.launch import check_pools, flower_command, node_name, worker_argv
from core import logs
from core.errors import ConfigError
from core.settings import Settings, parse_pool
from storage.telemetry import QueueState


def test_worker_pools_parse_and_bad_ones_stop_startup() -> None:
    s = Settings.from_env({"ATTACHD_WORKER_POOLS": "scan=2-6, verify=3, attach+maintenance=1"})
    pools = s.pools()
    assert [p.name for p in pools] == ["scan", "verify", "attach+maintenance"]
    assert (pools[0].min_concurrency, pools[0].max_concurrency, pools[0].autoscaled) == (2, 6, True)
    assert not pools[1].autoscaled
    for bad in ("scan", "scan=0", "scan=4-2", "=2"):
        with pytest.raises(ConfigError, match="ATTACHD_WORKER_POOLS"):
            Settings.from_env({"ATTACHD_WORKER_POOLS": bad})
    with pytest.raises(ConfigError, match="ATTACHD_LOG_FORMAT"):
        Settings.from_env({"ATTACHD_LOG_FORMAT": "xml"})


def test_worker_commands_follow_the_pools() -> None:
    s = Settings.from_env({})
    scan = parse_pool("scan=1-4")
    argv = worker_argv(s, scan, node_name(scan))
    assert argv[-4:] == ["-Q", "scan", "--hostname=scan@%h", "--autoscale=4,1"]
    both = parse_pool("attach+maintenance=2")
    assert node_name(both, "b") == "attach-maintenance.b@%h"
    assert worker_argv(s, both, "x@y")[-1] == "--concurrency=2"
    with pytest.raises(ConfigError, match="unknown queue"):
        check_pools([parse_pool("scna=1")], ("scan",))
    with pytest.raises(ConfigError, match="two pools"):
        check_pools([parse_pool("scan=1"), parse_pool("scan+verify=1")], ("scan", "verify"))


def test_flower_gets_auth_through_the_environment_and_never_opens_unprotected(tmp_path) -> None:
    s = replace(Settings.from_env({}), var_dir=tmp_path, flower_user="u", flower_password="p")
    argv, env = flower_command(s)
    assert env["FLOWER_BASIC_AUTH"] == "u:p" and not any(a == "p" for a in argv)
    assert "--persistent=True" in argv and f"--db={tmp_path / 'flower.db'}" in argv
    with pytest.raises(ConfigError, match="FLOWER_PASSWORD"):
        flower_command(
            replace(
                s,
                flower_host="0.0.0.0",  # noqa: S104 - refused, never bound
                flower_user="",
                flower_password="",
            )
        )
    with pytest.raises(ConfigError, match="go together"):
        flower_command(replace(s, flower_password=""))


def test_json_log_lines_carry_the_bound_ids_and_extras() -> None:
    record = logging.LogRecord("attachd.x", logging.WARNING, __file__, 1, "moved %s", ("a",), None)
    record.upload_id = "u-extra"
    with logs.bound(request_id="r1", task_id="t1"):
        line = json.loads(logs.JsonFormatter().format(record))
    assert line["msg"] == "moved a" and line["level"] == "WARNING"
    assert (line["request_id"], line["task_id"], line["upload_id"]) == ("r1", "t1", "u-extra")
    assert "request_id" not in json.loads(logs.JsonFormatter().format(record))


def _client(auth: OperatorAuth) -> testing.TestClient:
    class Guarded:
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            auth.require(req, bearer=req.get_param_as_bool("bearer") or False)
            resp.media = {"ok": True}

    app = falcon.App()
    app.add_route("/x", Guarded())
    return testing.TestClient(app)


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_operator_auth() -> None:
    client = _client(OperatorAuth("ops", "s3cret", "tok"))
    assert client.simulate_get("/x").status_code == 401
    assert client.simulate_get("/x", headers=_basic("ops", "s3cret")).status_code == 200
    assert client.simulate_get("/x", headers=_basic("ops", "S3CRET")).status_code == 401
    assert client.simulate_get("/x", headers={"Authorization": "Basic !!"}).status_code == 401
    bearer = {"Authorization": "Bearer tok"}
    assert client.simulate_get("/x", headers=bearer).status_code == 401
    assert client.simulate_get("/x", params={"bearer": "true"}, headers=bearer).status_code == 200
    # No password configured: closed, and says how to open it.
    closed = _client(OperatorAuth("ops", ""))
    resp = closed.simulate_get("/x", headers=_basic("ops", ""))
    assert resp.status_code == 403


def test_fleet_status_table() -> None:
    status = FleetStatus(
        workers=[
            WorkerState(
                "scan@h", ["scan"], [TaskRef("t1", "attachd.scan", "u1", 100.0)], [], [], 2, 4, 42
            ),
            WorkerState("verify@h", [], [], [], [], 1, 1, 43),
        ],
        queues=[QueueState("scan", 3, 75.0, 1)],
    )
    text = render(status, now=110.0)
    assert "scan@h" in text and "(draining)" in text and "upload=u1 for 10s" in text
    assert "75s" in text


def test_celerys_own_task_lines_name_their_task() -> None:
    context = {"id": "t-9", "name": "attachd.scan", "args": "('u',)"}
    record = logging.LogRecord(
        "celery.worker.strategy",
        logging.INFO,
        __file__,
        1,
        "Task %(name)s[%(id)s] received",
        (context,),
        None,
    )
    record.data = context
    line = json.loads(logs.JsonFormatter().format(record))
    assert (line["task_id"], line["task"]) == ("t-9", "attachd.scan")
    assert "data" not in line and line["msg"] == "Task attachd.scan[t-9] received"
