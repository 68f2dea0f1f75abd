"""A throw-away JupyterHub on loopback with students who run notebooks through their servers.

Used by ``tests/hub/test_hub.py`` (three students at once) and by
``tests/hub/measure_class.py`` (the sizing figures in INSTRUCTORS.md). Everything goes
over 127.0.0.1: the hub's REST API (admin token of the ``tlcourse-admin`` service), then
each student's own Jupyter server behind the hub's proxy (``/user/<name>/api/...``):
a session (kernel) is started over REST and the notebook's code cells are executed over
the kernel's websocket channels, as JupyterLab does. The kernels are the hub's: each is a
descendant of the hub process and carries ``JUPYTERHUB_USER`` in its environment.

:class:`Hub` is a context manager that ends every process it started, also on failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

REPO = Path(__file__).resolve().parents[2]
HUB_DIR = REPO / "hub"
CONFIG = HUB_DIR / "jupyterhub_config.py"
CHP = HUB_DIR / "node_modules" / ".bin" / "configurable-http-proxy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status_kib(pid: int, key: str) -> int | None:
    """A ``/proc/<pid>/status`` field in KiB (``VmHWM`` = peak resident set size), or None."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class RunResult:
    """One notebook run in one student's kernel."""

    user: str
    notebook: str
    wall_s: float = 0.0
    cells: int = 0
    errors: list[str] = field(default_factory=list)
    kernel_pid: int | None = None
    kernel_peak_rss_mib: float | None = None   # VmHWM of the kernel process
    kernel_end_rss_mib: float | None = None    # VmRSS after the last cell (what an idle open notebook holds)
    kernel_end_anon_mib: float | None = None   # RssAnon then: private memory (the rest is shared library pages)
    kernel_cpu_s: float | None = None          # user + system CPU seconds of the kernel
    server_peak_rss_mib: float | None = None   # VmHWM of the student's Jupyter server
    kernel_env_user: str | None = None         # JUPYTERHUB_USER seen in the kernel's environment
    peak_by_cell: list[tuple[int, int]] = field(default_factory=list)  # (cell index, VmHWM MiB) where it rose

    @property
    def ok(self) -> bool:
        return not self.errors and self.cells > 0


class Hub:
    """Start ``hub/jupyterhub_config.py`` on 127.0.0.1 in ``state`` (a temp folder)."""

    def __init__(self, state: Path, notebooks: Path | None = None, shared: Path | None = None,
                 env: dict[str, str] | None = None, log_name: str = "jupyterhub.log"):
        self.state = Path(state)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_hex(32)
        self.log_path = self.state / log_name
        self.notebooks = notebooks
        self.shared = shared
        self.extra_env = env or {}
        self.proc: subprocess.Popen | None = None
        self._seen: dict[int, psutil.Process] = {}
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "Hub":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, timeout: float = 90) -> None:
        if not CHP.exists():
            raise RuntimeError(f"{CHP} is missing: run `npm ci --prefix hub`")
        self.state.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.pop("PYTEST_CURRENT_TEST", None)   # kernels behave as under a student's Jupyter
        env.update({"TLCOURSE_HUB_DIR": str(self.state), "TLCOURSE_HUB_PORT": str(self.port),
                    "TLCOURSE_HUB_TOKEN": self.token})
        if self.notebooks is not None:
            env["TLCOURSE_HUB_NOTEBOOKS"] = str(self.notebooks)
        if self.shared is not None:
            env["TLCOURSE_SHARED"] = str(self.shared)
        for proxy_var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            env.pop(proxy_var, None)
        env.update(self.extra_env)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(CONFIG)], cwd=self.state, env=env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the hub exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                self.api("GET", "/hub/api/")
                self._remember()
                return
            except (OSError, RuntimeError):
                time.sleep(0.5)
        raise RuntimeError(f"the hub did not answer in {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def _remember(self) -> list[psutil.Process]:
        """Record the hub's process tree (proxy, servers, kernels) so close() can end it all."""
        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            tree = [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            return list(self._seen.values())
        for p in tree:
            self._seen.setdefault(p.pid, p)
        return tree

    def _strays(self) -> list[psutil.Process]:
        """Processes started for this hub that outlived it (working folder inside the state)."""
        found = []
        state = str(self.state.resolve())
        for p in psutil.process_iter(["pid", "cwd"]):
            cwd = p.info.get("cwd") or ""
            if p.pid != os.getpid() and (cwd == state or cwd.startswith(state + os.sep)):
                found.append(p)
        return found

    def close(self) -> list[int]:
        """Stop the servers, the hub and the proxy; kill whatever is left. Returns killed pids."""
        if self.proc is None:
            return []
        self._remember()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)   # cleanup_servers=True: stops servers + proxy
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        leftovers = {p.pid: p for p in list(self._seen.values()) + self._strays() if p.is_running()}
        for p in leftovers.values():
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
        _gone, alive = psutil.wait_procs(list(leftovers.values()), timeout=10)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=10)
        self.proc = None
        return sorted(leftovers)

    # ------------------------------------------------------------------ hub REST API
    def api(self, method: str, path: str, body: dict | None = None, timeout: float = 30):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with self._opener.open(req, timeout=timeout) as r:
                text = r.read().decode()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: HTTP {exc.code} {exc.read()[:500]!r}") from exc
        return json.loads(text) if text.strip() else None

    def add_student(self, name: str, timeout: float = 180) -> dict:
        """Create a user through the REST API, start their server, wait until it is ready."""
        self.api("POST", f"/hub/api/users/{name}")
        self.api("POST", f"/hub/api/users/{name}/server")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.api("GET", f"/hub/api/users/{name}")
            server = (model.get("servers") or {}).get("")
            if server and server.get("ready"):
                self._remember()
                return model
            if self.proc.poll() is not None:
                raise RuntimeError(f"the hub exited while starting {name}:\n{self.log_tail()}")
            time.sleep(0.5)
        raise RuntimeError(f"{name}'s server was not ready in {timeout:.0f} s:\n{self.log_tail()}")

    def user_server_pid(self, name: str) -> int | None:
        for p in self._remember():
            try:
                if p.environ().get("JUPYTERHUB_USER") == name and "jupyterhub.singleuser" in " ".join(p.cmdline()):
                    return p.pid
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return None

    def kernel_process(self, kernel_id: str) -> psutil.Process | None:
        for p in self._remember():
            try:
                if any(kernel_id in part for part in p.cmdline()):
                    return p
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return None

    # ------------------------------------------------------------------ running a notebook
    async def run_notebook(self, user: str, notebook: str, cell_timeout: float = 900) -> RunResult:
        """Run the code cells of ``notebook`` (a path in the user's home) in a new kernel.

        Cells tagged ``nbval-skip`` are skipped; an error fails the run unless the cell
        is tagged ``raises-exception`` (nbval's rules). Stops at the first error.
        """
        result = RunResult(user=user, notebook=notebook)
        base = f"{self.url}/user/{user}"
        headers = {"Authorization": f"token {self.token}", "Content-Type": "application/json"}
        client = AsyncHTTPClient()

        async def rest(method, path, body=None):
            resp = await client.fetch(HTTPRequest(base + path, method=method, headers=headers,
                                                  body=None if body is None else json.dumps(body),
                                                  request_timeout=120, allow_nonstandard_methods=True))
            return json.loads(resp.body) if resp.body else None

        nb = await rest("GET", f"/api/contents/{notebook}?content=1")
        cells = [c for c in nb["content"]["cells"] if c["cell_type"] == "code"]
        session = await rest("POST", "/api/sessions", {
            "path": notebook, "name": Path(notebook).name, "type": "notebook",
            "kernel": {"name": "python3"}})
        kernel_id = session["kernel"]["id"]
        session_id = uuid.uuid4().hex
        ws = await websocket_connect(HTTPRequest(
            f"{base.replace('http://', 'ws://')}/api/kernels/{kernel_id}/channels?session_id={session_id}",
            headers=headers, request_timeout=120), max_message_size=256 * 1024 * 1024)
        kernel = None
        t0 = time.perf_counter()
        try:
            for index, cell in enumerate(cells):
                tags = set(cell.get("metadata", {}).get("tags", []))
                if "nbval-skip" in tags:
                    continue
                if kernel is None:
                    kernel = self.kernel_process(kernel_id)
                error = await _execute(ws, session_id, user, "".join(cell["source"]), cell_timeout)
                result.cells += 1
                hwm = proc_status_kib(kernel.pid, "VmHWM") if kernel is not None else None
                if hwm and (not result.peak_by_cell or hwm // 1024 > result.peak_by_cell[-1][1] + 100):
                    result.peak_by_cell.append((index, hwm // 1024))
                if error and "raises-exception" not in tags:
                    result.errors.append(f"{user}: cell {index} of {notebook}: {error}")
                    break
            result.wall_s = time.perf_counter() - t0
            kernel = kernel or self.kernel_process(kernel_id)
            if kernel is not None:
                result.kernel_pid = kernel.pid
                hwm = proc_status_kib(kernel.pid, "VmHWM")
                result.kernel_peak_rss_mib = hwm / 1024 if hwm else None
                rss = proc_status_kib(kernel.pid, "VmRSS")
                result.kernel_end_rss_mib = rss / 1024 if rss else None
                anon = proc_status_kib(kernel.pid, "RssAnon")
                result.kernel_end_anon_mib = anon / 1024 if anon else None
                times = kernel.cpu_times()
                result.kernel_cpu_s = times.user + times.system + times.children_user + times.children_system
                result.kernel_env_user = kernel.environ().get("JUPYTERHUB_USER")
            server = self.user_server_pid(user)
            if server is not None:
                hwm = proc_status_kib(server, "VmHWM")
                result.server_peak_rss_mib = hwm / 1024 if hwm else None
        finally:
            ws.close()
            try:
                await rest("DELETE", f"/api/sessions/{session['id']}")
            except Exception:  # noqa: BLE001 - the hub's shutdown ends the kernel anyway
                pass
        return result


def _message(session_id: str, user: str, code: str) -> dict:
    msg_id = uuid.uuid4().hex
    return {
        "header": {"msg_id": msg_id, "username": user, "session": session_id,
                   "msg_type": "execute_request", "version": "5.3",
                   "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    }


async def _execute(ws, session_id: str, user: str, code: str, timeout: float) -> str | None:
    """Execute one cell; return None or the error (``ename: evalue`` and the traceback's end)."""
    msg = _message(session_id, user, code)
    msg_id = msg["header"]["msg_id"]
    await ws.write_message(json.dumps(msg))
    reply = idle = False
    error = None
    deadline = time.monotonic() + timeout
    while not (reply and idle):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return f"timed out after {timeout:.0f} s"
        raw = await asyncio.wait_for(ws.read_message(), remaining)
        if raw is None:
            return "the kernel's websocket closed (kernel died?)"
        if isinstance(raw, bytes):
            continue   # binary frames carry buffers (widgets), not replies
        m = json.loads(raw)
        if m.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = m.get("msg_type") or m["header"]["msg_type"]
        if kind == "error":
            c = m["content"]
            error = f"{c.get('ename')}: {c.get('evalue')}\n" + "\n".join(c.get("traceback", [])[-3:])
        elif kind == "status" and m["content"].get("execution_state") == "idle":
            idle = True
        elif kind == "execute_reply":
            reply = True
            if m["content"].get("status") != "ok" and error is None:
                c = m["content"]
                error = f"{c.get('ename', c.get('status'))}: {c.get('evalue', '')}"
    return error


async def run_class(hub: Hub, users: list[str], notebook: str) -> list[RunResult]:
    """Run ``notebook`` in every user's server at the same time."""
    return list(await asyncio.gather(*(hub.run_notebook(u, notebook) for u in users)))
