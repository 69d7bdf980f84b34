"""blackbox_exporter: its config, its process, the /probe driver and one measured run."""

import concurrent.futures
import http.client
import re
import threading
import time

from .fleet import sim_stats, sim_url, start_sim
from .procs import Noise, free_port, proc_cpu_seconds, proc_mem_mb
from .targets import HOST
from .web import wait_http


def write_blackbox_config(orgs, sim_port, workdir, tls=None):
    """One http module per org, each with its own oauth2 client credentials; over HTTPS both the
    probe and the token request trust the bench CA."""
    trust = [] if tls is None else [f"        tls_config: {{ca_file: {tls.ca}}}"]
    lines = ["modules:"]
    for i in range(orgs):
        lines += [
            f"  org{i:05d}:",
            "    prober: http",
            "    timeout: 5s",
            "    http:",
            "      valid_status_codes: [200]",
            *[t[2:] for t in trust],
            "      oauth2:",
            f"        client_id: sim{i:05d}",
            f"        client_secret: secret{i:05d}",
            f"        token_url: {sim_url(sim_port, tls)}/v2/client/oauth2/token",
            *trust,
        ]
    path = workdir / f"blackbox-{sim_port}.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def drive_probes(bb_port, sim_port, orgs, interval_s, duration_s, start, workers=32, tls=None):
    """Issues each org's /probe every interval_s for duration_s, orgs spread evenly over the
    interval (as Prometheus spreads its scrapes), from a thread pool with one keep-alive
    connection per thread. Returns (probes answered, probes with probe_success 0, errors)."""
    local = threading.local()
    lock = threading.Lock()
    counts = {"probes": 0, "failed": 0, "errors": 0}

    def probe(i):
        path = (f"/probe?module=org{i:05d}&target={sim_url(sim_port, tls)}"
                f"/v2/client/sim{i:05d}/ping")
        for _attempt in range(2):  # a kept-alive connection may have been closed meanwhile
            if getattr(local, "conn", None) is None:
                local.conn = http.client.HTTPConnection(HOST, bb_port, timeout=30)
            try:
                local.conn.request("GET", path)
                resp = local.conn.getresponse()
                body = resp.read().decode()
                break
            except (OSError, http.client.HTTPException):
                local.conn.close()
                local.conn = None
        else:
            with lock:
                counts["errors"] += 1
            return
        success = resp.status == 200 and re.search(r"^probe_success 1$", body, re.M)
        with lock:
            counts["probes"] += 1
            if not success:
                counts["failed"] += 1

    plan = sorted((start + k * interval_s + i * interval_s / orgs, i)
                  for i in range(orgs) for k in range(int(duration_s // interval_s) + 1)
                  if k * interval_s + i * interval_s / orgs < duration_s)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
    try:
        futures = []
        for when, i in plan:
            delay = when - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(probe, i))
        concurrent.futures.wait(futures, timeout=60)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # running probes end within their timeout
    return counts["probes"], counts["failed"], counts["errors"]



def start_blackbox(procs, workdir, bb_bin, orgs, sim_port, tls=None):
    config = write_blackbox_config(orgs, sim_port, workdir, tls)
    port = free_port()
    bb = procs.start([bb_bin, f"--config.file={config}", f"--web.listen-address={HOST}:{port}"],
                     workdir / f"blackbox-{port}.log")
    wait_http(port, "/-/healthy", bb)
    return bb, port


def run_blackbox(procs, workdir, bb_bin, orgs, interval_s, duration_s, tls=None, spacing_ms=None):
    """blackbox_exporter with an oauth2 module per org, driven through /probe, against a fresh
    simulator. CPU is the whole process's since it started (like the agent's); the steady-state
    figure is over whole intervals after the first."""
    sim, sim_port = start_sim(procs, workdir, orgs, tls, spacing_ms)
    bb = None
    try:
        bb, port = start_blackbox(procs, workdir, bb_bin, orgs, sim_port, tls)
        before = sim_stats(sim_port, tls)
        noise = Noise([bb.pid, sim.pid])

        # Steady-state window, as for the agent: whole intervals, after the first.
        start = time.monotonic() + 0.2
        rounds = int((duration_s - interval_s / 2) // interval_s)
        marks = {}

        def sample():
            for name, offset in (("from", interval_s / 2), ("to", interval_s / 2 + rounds * interval_s)):
                time.sleep(max(0.0, start + offset - time.monotonic()))
                marks[name] = proc_cpu_seconds(bb.pid)
        sampler = threading.Thread(target=sample, daemon=True)
        if rounds >= 1:
            sampler.start()
        probes, failed, errors = drive_probes(port, sim_port, orgs, interval_s, duration_s, start,
                                              tls=tls)
        if rounds >= 1:
            sampler.join(timeout=1)
        cpu = proc_cpu_seconds(bb.pid)
        rss = proc_mem_mb(bb.pid, "VmRSS")
        other = noise.percent()
        after = sim_stats(sim_port, tls)
        steady = marks["to"] - marks["from"] if "to" in marks else None
        return {
            "probes": probes,
            "cpu_s": cpu,
            "cpu_per_1k": 1000 * cpu / probes,
            "cpu_per_1k_steady": None if steady is None else 1000 * steady / (orgs * rounds),
            "tokens_per_1k": 1000 * (after["token_requests"] - before["token_requests"]) / probes,
            "rate_limited": after["rate_limited"] - before["rate_limited"],
            "failed": failed,
            "errors": errors,
            "rss_mb": rss,
            "other_pct": other,
        }
    finally:
        if bb is not None:
            procs.stop(bb)
        procs.stop(sim)

