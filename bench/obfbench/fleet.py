"""The build, the simulator, the agent's config and process, external tools and the bench CA."""

import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

from .procs import free_port, log
from .targets import AGENT_BIN, FLEET_CONFIG, HOST, ROOT
from .web import connect, http_get, wait_http


def build():
    log("building: cargo build --release")
    subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True,
                   stdout=sys.stderr)


def start_sim(procs, workdir, orgs, tls=None, spacing_ms=None):
    """`obf-exporter sim` on a free port; over HTTPS with the bench CA's leaf when `tls` is given;
    `spacing_ms` replaces OBF's 10 s between two tokens for one client."""
    port = free_port()
    argv = [str(AGENT_BIN), "sim", "--listen", f"{HOST}:{port}", "--orgs", str(orgs)]
    if tls is not None:
        argv += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
    proc = procs.start(argv, workdir / f"sim-{port}.log")
    wait_http(port, "/sim/stats", proc, tls=tls)
    if spacing_ms is not None:
        conn = connect(port, tls=tls)
        try:
            conn.request("PUT", "/sim/settings", body=json.dumps({"token_min_interval_ms": spacing_ms}),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            if resp.status // 100 != 2:
                raise RuntimeError(f"PUT /sim/settings answered {resp.status}")
        finally:
            conn.close()
    return proc, port


def sim_url(port, tls=None):
    return f"{'https' if tls else 'http'}://{HOST}:{port}"


def sim_stats(port, tls=None):
    status, body, _ = http_get(port, "/sim/stats", tls=tls)
    if status != 200:
        raise RuntimeError(f"/sim/stats answered {status}")
    return json.loads(body)


def write_fleet_config(orgs, sim_port, interval, workdir, jitter=None, tls=None, histograms=None):
    """bench/fleet-config; `tls` adds [defaults] ca_file (the bench CA), `histograms` sets
    [exporter] latency_histograms."""
    directory = Path(tempfile.mkdtemp(prefix="fleet-", dir=workdir))
    env = dict(os.environ)
    env.pop("CA_FILE", None)
    env.pop("LATENCY_HISTOGRAMS", None)
    if tls is not None:
        env["CA_FILE"] = str(tls.ca)
    if histograms:
        env["LATENCY_HISTOGRAMS"] = histograms
    subprocess.run([str(FLEET_CONFIG), str(orgs), sim_url(sim_port, tls), str(directory),
                    interval] + ([jitter] if jitter else []), check=True, stdout=subprocess.DEVNULL,
                   env=env)
    return directory / "config.toml"


def start_agent(procs, workdir, config):
    port = free_port()
    proc = procs.start([str(AGENT_BIN), "run", "--config", str(config),
                        "--listen", f"{HOST}:{port}"], workdir / f"agent-{port}.log")
    return proc, port


def find_tool(names, package, sections):
    """The path of the first of `names` on PATH; installs Debian's `package` with apt-get when
    none is and the script runs as root."""
    def which():
        return next((path for path in map(shutil.which, names) if path), None)
    path = which()
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        log(f"installing {package} with apt-get")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        install = ["apt-get", "install", "-y", "--no-install-recommends", package]
        if subprocess.run(install, env=env, stdout=sys.stderr).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, stdout=sys.stderr, check=True)
            subprocess.run(install, env=env, stdout=sys.stderr, check=True)
        path = which()
    if path is None:
        raise RuntimeError(f"{names[0]} not found: install Debian's {package} (apt-get install "
                           f"{package}), or leave out the sections that need it ({sections})")
    return path


def find_blackbox():
    return find_tool(("prometheus-blackbox-exporter", "blackbox_exporter"),
                     "prometheus-blackbox-exporter", "compare, together, https")


class Tls:
    """A CA and a leaf for 127.0.0.1 signed by it (ECDSA P-256, valid 2 days), made with openssl in
    `directory` at bench start. The simulator serves the leaf; blackbox_exporter, the agent
    (`ca_file`) and this script trust the CA and nothing else."""

    def __init__(self, directory):
        openssl = find_tool(("openssl",), "openssl", "https, limit")
        directory.mkdir(parents=True, exist_ok=True)
        self.ca, self.cert, self.key = (directory / "ca.pem", directory / "leaf.pem",
                                        directory / "leaf.key")
        ca_key, csr, ext = directory / "ca.key", directory / "leaf.csr", directory / "leaf.ext"
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                       "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
        for argv in (
            [openssl, "req", "-x509", *ec, "-days", "2", "-subj", "/CN=obf-exporter bench CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", ca_key, "-out", self.ca],
            [openssl, "req", *ec, "-subj", "/CN=127.0.0.1", "-keyout", self.key, "-out", csr],
            [openssl, "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", ca_key,
             "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", self.cert],
        ):
            subprocess.run([str(a) for a in argv], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
        self.context = ssl.create_default_context(cafile=str(self.ca))
