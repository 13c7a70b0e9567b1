"""JupyterHub for one class on one machine, as `make hub` starts it:
`jupyterhub -f course/hub/jupyterhub_config.py` with COURSE_HUB_DIR naming the folder `course hub setup` laid
out (class.json, exchange/, config/).

* Login: PAM (JupyterHub's default authenticator): the roster's Unix users with their own passwords,
  nothing to run beside the hub; only the roster is let in, instructors are hub admins.
* Servers: LocalProcessSpawner, so each learner's server runs as that learner's Unix user in a 0700 home, with
  JupyterLab as `make lab` configures it (the start page as landing page, `course` in the terminal) and
  JUPYTER_CONFIG_PATH pointing at the role's nbgrader settings (the shared exchange; formgrader only for
  instructors).
* Proxy: the Python implementation of configurable-http-proxy, installed by pip with the hub (no Node.js).
Settings from the environment: COURSE_HUB_IP (default 127.0.0.1), COURSE_HUB_PORT (8000), COURSE_HUB_SSL_CERT
and COURSE_HUB_SSL_KEY (serve HTTPS: needed when learners log in over a network).
"""

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
HUB = Path(os.environ["COURSE_HUB_DIR"]).resolve()
CLASS = json.loads((HUB / "class.json").read_text())
BIN = Path(CLASS["bin"])  # the environment the course is installed in, shared by every user

c = get_config()  # noqa: F821
c.JupyterHub.bind_url = (
    f"http://{os.environ.get('COURSE_HUB_IP', '127.0.0.1')}:{os.environ.get('COURSE_HUB_PORT', 8000)}"
)
c.JupyterHub.hub_ip = "127.0.0.1"
if os.environ.get("COURSE_HUB_SSL_CERT"):
    c.JupyterHub.ssl_cert = os.environ["COURSE_HUB_SSL_CERT"]
    c.JupyterHub.ssl_key = os.environ["COURSE_HUB_SSL_KEY"]
c.JupyterHub.db_url = f"sqlite:///{HUB / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(HUB / "jupyterhub_cookie_secret")
# Without --proxy-timeout the Python proxy gives up on a request after tornado's default 20 s, shorter than a
# Validate of the whole notebook.
c.ConfigurableHTTPProxy.command = [
    str(Path(sys.executable).parent / "configurable-http-proxy"),
    "--proxy-timeout=900000",
]

c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allowed_users = set(CLASS["learner"] + CLASS["instructor"])
c.Authenticator.admin_users = set(CLASS["instructor"])

c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [str(BIN / "jupyterhub-singleuser")]
c.Spawner.args = [f"--config={HERE.parent / 'lab' / 'jupyter_lab_config.py'}"]  # `make lab`'s settings
c.Spawner.notebook_dir = "~"
# The landing page: the start page (course/lab's START_PAGE). jupyterhub-singleuser takes the Lab extension's
# own default (/lab), not LabApp.default_url, so the hub passes it on.
c.Spawner.default_url = "/lab/tree/notebooks/00-start-here.ipynb"
c.Spawner.start_timeout = c.Spawner.http_timeout = 180  # JupyterLab's first start on a busy machine
c.Spawner.environment = {
    "PATH": f"{BIN}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
    "PYTHONWARNINGS": "ignore",
    "COURSE_HUB_EXCHANGE": CLASS["exchange"],  # `course grade collect --exchange`, `course hub release`
}


def role_config(spawner) -> None:
    role = "instructor" if spawner.user.name in CLASS["instructor"] else "learner"
    spawner.environment = {**spawner.environment, "JUPYTER_CONFIG_PATH": str(HUB / "config" / role)}


c.Spawner.pre_spawn_hook = role_config
