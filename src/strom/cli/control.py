"""The control channel of a ``strom run`` process: how ``strom savepoint`` and ``strom stop``
reach a job running in another process.

Each ``strom run`` listens on a Unix socket ``<runtime dir>/<pid>.sock`` (runtime dir:
``$STROM_RUNTIME_DIR``, else ``/tmp/strom-<uid>``, mode 0700 so only the user can connect).
Requests and replies are one JSON object per line:

* ``{"op": "list"}`` -> ``{"ok": true, "pid": 123, "jobs": [{"id", "name", "status"}]}``
* ``{"op": "savepoint", "job": "<id prefix>" | null, "dir": "/abs", "stop": false}``
  -> ``{"ok": true, "path": "/abs/savepoint-..."}`` or ``{"ok": false, "error": "..."}``
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from strom.cli.run import UsageError
from strom.errors import StromError
from strom.runtime.executor import running_jobs


def runtime_dir() -> Path:
    return Path(os.environ.get("STROM_RUNTIME_DIR") or f"/tmp/strom-{os.getuid()}")


class ControlServer:
    """Serves control requests for the jobs of this process while it runs."""

    def __init__(self) -> None:
        self.path = runtime_dir() / f"{os.getpid()}.sock"
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ControlServer:
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket of a dead process with our pid
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.path))
        sock.listen(4)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="strom-control", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _serve(self) -> None:
        while self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        after: Callable[[], None] | None = None
        with conn, conn.makefile("rwb") as f:
            try:
                reply, after = self._answer(json.loads(f.readline()))
            except Exception as e:  # every failure becomes an answer, never a dead server
                reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            f.write(json.dumps(reply).encode() + b"\n")
            f.flush()
        # stopping ends the job and with it this process: only after the reply is out
        if after is not None:
            after()

    def _answer(self, request: dict[str, Any]) -> tuple[dict[str, Any], Callable[[], None] | None]:
        jobs = running_jobs()
        if request.get("op") == "list":
            return {
                "ok": True,
                "pid": os.getpid(),
                "jobs": [
                    {"id": j.job_id, "name": j.graph.job_name, "status": j.get_job_status().value}
                    for j in jobs
                ],
            }, None
        if request.get("op") == "savepoint":
            prefix = request.get("job") or ""
            matches = [j for j in jobs if j.job_id.startswith(prefix)]
            if len(matches) != 1:
                names = ", ".join(f"{j.job_id[:12]} ({j.graph.job_name})" for j in jobs) or "none"
                error = f"{len(matches)} jobs match; running: {names}"
                return {"ok": False, "error": error}, None
            client, directory = matches[0], str(request["dir"])
            path = client.trigger_savepoint(directory)
            after = client.cancel_after_savepoint if request.get("stop") else None
            return {"ok": True, "path": path}, after
        return {"ok": False, "error": f"unknown request {request!r}"}, None


def _ask(path: Path, request: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        with s.makefile("rwb") as f:
            f.write(json.dumps(request).encode() + b"\n")
            f.flush()
            reply: dict[str, Any] = json.loads(f.readline())
            return reply


def request_savepoint(job: str | None, directory: str, *, stop: bool) -> str:
    """Find the job (process id, job id prefix, or the only one running) and ask it for a
    savepoint under ``directory``; returns the savepoint's path."""
    directory = os.path.abspath(directory)
    base = runtime_dir()
    if job is not None and job.isdigit() and (base / f"{job}.sock").exists():
        candidates = [(base / f"{job}.sock", None)]
    else:
        candidates = []
        for sock_path in sorted(base.glob("*.sock")) if base.is_dir() else []:
            try:
                listing = _ask(sock_path, {"op": "list"}, timeout=5)
            except OSError:
                with contextlib.suppress(OSError):
                    sock_path.unlink()  # its process is gone
                continue
            for entry in listing.get("jobs", []):
                if job is None or entry["id"].startswith(job):
                    candidates.append((sock_path, entry["id"]))
    if len(candidates) != 1:
        what = f"job {job!r}" if job else "a running job"
        raise UsageError(
            f"found {len(candidates)} matches for {what} started with 'strom run' "
            f"(looked in {base}); name the process id or job id"
        )
    sock_path, job_id = candidates[0]
    reply = _ask(sock_path, {"op": "savepoint", "job": job_id, "dir": directory, "stop": stop})
    if not reply.get("ok"):
        raise StromError(f"savepoint failed: {reply.get('error')}")
    return str(reply["path"])
