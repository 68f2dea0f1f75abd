"""JupyterHub configuration for a class working through tlcourse on ONE machine.

Start it from the repository root (see hub/README.md)::

    npm ci --prefix hub                      # the proxy, into hub/node_modules
    TLCOURSE_HUB_TOKEN=$(openssl rand -hex 32) .venv/bin/jupyterhub -f hub/jupyterhub_config.py

What it sets up:

* JupyterHub (PyPI) behind ``configurable-http-proxy`` from ``hub/node_modules``;
  hub, proxy and servers listen on 127.0.0.1 only.
* ``SimpleLocalProcessSpawner``: every student's server runs as the hub's OS user,
  in its own home folder ``$TLCOURSE_HUB_DIR/home/<name>`` that gets a copy of the
  notebooks on first start (an existing copy is never overwritten).
* ``DummyAuthenticator``: ANY user name is accepted with the shared password
  ``$TLCOURSE_HUB_PASSWORD`` (no password if unset). **For tests and a trusted room
  only**: a real class needs a real authenticator (the university's OAuth/LDAP) and a
  spawner that isolates students (separate OS users, containers or Kubernetes).
* An admin API token for scripts (``$TLCOURSE_HUB_TOKEN``), held by the service
  ``tlcourse-admin`` (scopes ``admin:users``, ``admin:servers``, ``access:servers``,
  ``read:hub``): create users, start/stop their servers, use their servers' APIs.
* Caches (shared notes §9, INSTRUCTORS.md "Running the course on JupyterHub"):
  each student writes features and saved models into their own
  ``~/.cache/tlcourse`` (``TLCOURSE_CACHE``) and downloads into ``~/.keras``
  (``KERAS_HOME``); the instructor's prefetched folder ``$TLCOURSE_SHARED`` (optional) is
  read, never written: ``$TLCOURSE_SHARED/keras`` (``TLCOURSE_SHARED_KERAS_HOME``, VGG16's
  weights), as filled by ``python -m tlcourse prefetch --keras-home $TLCOURSE_SHARED/keras``.

Environment variables read here (all optional except the token):

=========================  ==================================================  =========================
variable                   meaning                                             default
=========================  ==================================================  =========================
TLCOURSE_HUB_TOKEN         admin API token (at least 32 characters)            none: no admin service
TLCOURSE_HUB_DIR           state: database, cookie secret, students' homes     ``hub/run`` (git-ignored)
TLCOURSE_HUB_PORT          the public port of the proxy on 127.0.0.1           8000
TLCOURSE_HUB_NOTEBOOKS     folder copied into each new home as ``notebooks``   ``student/`` if present,
                                                                               else ``notebooks/``
TLCOURSE_HUB_PASSWORD      the DummyAuthenticator's shared password            none
TLCOURSE_SHARED            the instructor's prefetched, read-only folder       none
TLCOURSE_HUB_MEM_LIMIT     per-student memory limit, e.g. ``3G`` (see below)   none
=========================  ==================================================  =========================

``TLCOURSE_HUB_MEM_LIMIT`` sets ``Spawner.mem_limit`` (the server sees it as ``MEM_LIMIT``);
a local-process spawner does NOT enforce it. Enforcement
needs a spawner that does (systemdspawner, dockerspawner, kubespawner).
"""

# ruff: noqa: F821  (``c`` is injected by JupyterHub's config loader)

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

HUB = Path(__file__).resolve().parent
REPO = HUB.parent
STATE = Path(os.environ.get("TLCOURSE_HUB_DIR") or HUB / "run").resolve()
HOMES = STATE / "home"
STATE.mkdir(parents=True, exist_ok=True)
HOMES.mkdir(parents=True, exist_ok=True)


def _free_port() -> int:
    """A port nobody listens on now, on 127.0.0.1 (for the hub's and proxy's internal APIs)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebooks_source() -> Path:
    env = os.environ.get("TLCOURSE_HUB_NOTEBOOKS")
    if env:
        return Path(env).resolve()
    student = REPO / "student"   # tools/make_student_copies.py: solutions removed
    return student if any(student.glob("[0-9][0-9]_*.ipynb")) else REPO / "notebooks"


# --------------------------------------------------------------------- network
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = int(os.environ.get("TLCOURSE_HUB_PORT", "8000"))
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = _free_port()
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{_free_port()}"
_chp = HUB / "node_modules" / ".bin" / "configurable-http-proxy"
if not _chp.exists():
    sys.exit(f"configurable-http-proxy is not installed in {_chp.parent}: run "
             f"`npm ci --prefix {HUB}` (Node.js 20 or newer), then start the hub again.")
c.ConfigurableHTTPProxy.command = [str(_chp)]
c.ConfigurableHTTPProxy.pid_file = str(STATE / "proxy.pid")
c.Spawner.ip = "127.0.0.1"

# ----------------------------------------------------------------------- state
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True   # stopping the hub stops the students' servers

# ------------------------------------------------------- authentication (TEST ONLY)
c.JupyterHub.authenticator_class = "dummy"
if os.environ.get("TLCOURSE_HUB_PASSWORD"):
    c.DummyAuthenticator.password = os.environ["TLCOURSE_HUB_PASSWORD"]
c.Authenticator.allow_all = True      # any name may log in: a trusted room or a test
c.Authenticator.admin_users = {"instructor"}

_token = os.environ.get("TLCOURSE_HUB_TOKEN")
if _token:
    c.JupyterHub.services = [{"name": "tlcourse-admin", "api_token": _token}]
    c.JupyterHub.load_roles = [{"name": "tlcourse-admin", "scopes": ["admin:users", "admin:servers",
                                                                     "access:servers", "read:hub"],
                                "services": ["tlcourse-admin"]}]

# ---------------------------------------------------------------------- spawner
c.JupyterHub.spawner_class = "simple"   # jupyterhub.spawner.SimpleLocalProcessSpawner
c.SimpleLocalProcessSpawner.home_dir_template = str(HOMES / "{username}")
# The hub's own Python runs the servers and kernels: the course's virtualenv.
c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
if hasattr(os, "geteuid") and os.geteuid() == 0:
    # Containers and CI run as root; Jupyter refuses that unless told.
    c.Spawner.args = ["--ServerApp.allow_root=True"]


def _home(spawner) -> Path:
    return HOMES / spawner.user.name


def _pre_spawn(spawner) -> None:
    """Give a new student a home with a copy of the notebooks (never overwrite their work)."""
    home = _home(spawner)
    home.mkdir(parents=True, exist_ok=True)
    target = home / "notebooks"
    if not target.exists():
        shutil.copytree(_notebooks_source(), target,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*.py"))


c.Spawner.pre_spawn_hook = _pre_spawn

_shared = os.environ.get("TLCOURSE_SHARED")
_env = {
    # writable, per student
    "TLCOURSE_CACHE": lambda sp: str(_home(sp) / ".cache" / "tlcourse"),
    "KERAS_HOME": lambda sp: str(_home(sp) / ".keras"),
    "MPLCONFIGDIR": lambda sp: str(_home(sp) / ".config" / "matplotlib"),
    # the notebooks find the checkout's datasets/ through the installed package
    "TF_CPP_MIN_LOG_LEVEL": "3",
}
if _shared:
    _shared_path = Path(_shared).resolve()
    _env["TLCOURSE_SHARED_KERAS_HOME"] = str(_shared_path / "keras")
c.Spawner.environment = _env
if os.environ.get("TLCOURSE_HUB_MEM_LIMIT"):
    c.Spawner.mem_limit = os.environ["TLCOURSE_HUB_MEM_LIMIT"]   # shown, not enforced here
