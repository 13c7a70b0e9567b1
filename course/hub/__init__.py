"""The course on a JupyterHub for one class on one machine (`make hub`, `course hub`).

classroom.py          roster -> Unix users, homes with the course, the exchange, per-role Jupyter config
jupyterhub_config.py  the hub: PAM login for the roster, LocalProcessSpawner, the start page, the proxy
cli.py                `course hub setup | remove | release | return-feedback`
"""
