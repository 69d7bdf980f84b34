"""The agent's measured runs: alone, at start-up, beside blackbox_exporter; wrk's floor.

Each returns a dict of figures for one run."""

import json
import os
import re
import statistics
import threading
import time

from .blackbox import drive_probes, start_blackbox
from .fleet import sim_stats, sim_url, start_agent, start_sim, write_fleet_config
from .procs import Noise, log, proc_cpu_seconds, proc_mem_mb
from .web import (ORG_LABEL_RE, connect, histogram_quantile_le, http_get, pings_by_org,
                  timed_get)


def run_agent(procs, workdir, orgs, interval_s, duration_s, jitter=None, tls=None,
              histograms=None, spacing_ms=None):
    """The agent with `orgs` orgs at `interval_s` for `duration_s`, against a fresh simulator
    (over HTTPS with `tls`; `histograms` sets [exporter] latency_histograms)."""
    sim, sim_port = start_sim(procs, workdir, orgs, tls, spacing_ms)
    agent = None
    try:
        config = write_fleet_config(orgs, sim_port, f"{interval_s}s", workdir,
                                    f"{round(jitter * interval_s * 1000)}ms" if jitter else None,
                                    tls, histograms)
        spawned = time.monotonic()
        agent, port = start_agent(procs, workdir, config)
        noise = Noise([agent.pid, sim.pid])

        def at(offset):
            delay = spawned + offset - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if agent.poll() is not None:
                raise RuntimeError(f"the agent exited with {agent.returncode} (see its log)")

        # Steady state: a window that holds whole rounds only and starts after the first one
        # (which also reads the secrets and fetches every token).
        rounds = int((duration_s - interval_s / 2) // interval_s)
        steady = None
        if rounds >= 1:
            at(interval_s / 2)
            cpu0 = proc_cpu_seconds(agent.pid)
            at(interval_s / 2 + rounds * interval_s)
            steady = 100 * (proc_cpu_seconds(agent.pid) - cpu0) / (rounds * interval_s)
        at(duration_s)
        # CPU first, then at once the scrape that counts the probes: rounds start at spawn +
        # start-up time + k * interval, so the next one begins just after this point.
        cpu = proc_cpu_seconds(agent.pid)
        status, body, _ = http_get(port, "/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        rss, hwm = proc_mem_mb(agent.pid, "VmRSS"), proc_mem_mb(agent.pid, "VmHWM")
        other = noise.percent()
        stats = sim_stats(sim_port, tls)
        text = body.decode()
        pings = pings_by_org(text)
        probes = sum(sum(v.values()) for v in pings.values())
        # /metrics timing half an interval later, between two rounds: a round of 10,000 orgs
        # keeps both cores busy for a second or two, and a scrape seldom falls into one.
        at(duration_s + interval_s / 2)
        times = []
        for _ in range(5):
            status, body, seconds = timed_get(port, "/metrics")
            if status != 200:
                raise RuntimeError(f"/metrics answered {status}")
            times.append(seconds)
        log(f"    /metrics times, ms: {', '.join(f'{t * 1000:.1f}' for t in times)}")
        return {
            "orgs_seen": len(pings),
            "probes": probes,
            "failed": sum(v.get("failure", 0) for v in pings.values()),
            "cpu_s": cpu,
            "cpu_pct": 100 * cpu / duration_s,
            "cpu_pct_steady": steady,
            "cpu_per_1k": 1000 * cpu / probes if probes else float("inf"),
            "cpu_per_1k_steady": (None if steady is None else
                                  1000 * (steady / 100 * rounds * interval_s) / (orgs * rounds)),
            "tokens_issued": stats["tokens_issued"],
            "token_requests": stats["token_requests"],
            "tokens_per_1k": 1000 * stats["token_requests"] / probes if probes else float("inf"),
            "rate_limited": stats["rate_limited"],
            "rss_mb": rss,
            "hwm_mb": hwm,
            "lateness_p50": histogram_quantile_le(text, "obf_schedule_lateness_seconds", 0.50),
            "lateness_p99": histogram_quantile_le(text, "obf_schedule_lateness_seconds", 0.99),
            "metrics_s": statistics.median(times),
            "metrics_bytes": len(body),
            # Series: every sample line of the last scrape (comments are # HELP and # TYPE).
            "metrics_series": sum(1 for line in body.splitlines()
                                  if line and not line.startswith(b"#")),
            # Series that grow with the fleet: those labelled with an org.
            "metrics_org_series": len(ORG_LABEL_RE.findall(body)),
            "other_pct": other,
        }
    finally:
        if agent is not None:
            procs.stop(agent)
        procs.stop(sim)


def run_startup(procs, workdir, orgs, timeout_s=120):
    """Seconds from spawning the agent until every org has obf_pings_total{result="success"} >= 1,
    polling /metrics every 100 ms."""
    sim, sim_port = start_sim(procs, workdir, orgs)
    agent = None
    try:
        config = write_fleet_config(orgs, sim_port, "60s", workdir)
        spawned = time.monotonic()
        agent, port = start_agent(procs, workdir, config)
        while time.monotonic() - spawned < timeout_s:
            if agent.poll() is not None:
                raise RuntimeError(f"the agent exited with {agent.returncode} (see its log)")
            try:
                status, body, _ = http_get(port, "/metrics", timeout=5)
            except OSError:
                status = None
            if status == 200:
                pings = pings_by_org(body.decode())
                done = sum(1 for v in pings.values() if v.get("success", 0) >= 1)
                if done >= orgs:
                    return {"seconds": time.monotonic() - spawned}
            time.sleep(0.1)
        raise RuntimeError(f"not every org had a successful ping within {timeout_s} s")
    finally:
        if agent is not None:
            procs.stop(agent)
        procs.stop(sim)


def run_together(procs, workdir, bb_bin, orgs, interval_s, duration_s, tls=None, spacing_ms=None):
    """blackbox_exporter and the agent probing the same orgs AT THE SAME TIME against one
    simulator, as on a shared machine: each one's CPU per probe while the other runs. Both start
    together; the steady window (whole intervals after the first) is the same for both."""
    sim, sim_port = start_sim(procs, workdir, orgs, tls, spacing_ms)
    bb = agent = None
    try:
        bb, bb_port = start_blackbox(procs, workdir, bb_bin, orgs, sim_port, tls)
        config = write_fleet_config(orgs, sim_port, f"{interval_s}s", workdir, tls=tls)
        agent, port = start_agent(procs, workdir, config)
        noise = Noise([bb.pid, agent.pid, sim.pid])
        start = time.monotonic() + 0.2
        rounds = int((duration_s - interval_s / 2) // interval_s)
        marks = {}

        def sample():
            for name, offset in (("from", interval_s / 2), ("to", interval_s / 2 + rounds * interval_s)):
                time.sleep(max(0.0, start + offset - time.monotonic()))
                marks[name] = (proc_cpu_seconds(bb.pid), proc_cpu_seconds(agent.pid))
        sampler = threading.Thread(target=sample, daemon=True)
        if rounds >= 1:
            sampler.start()
        probes, failed, errors = drive_probes(bb_port, sim_port, orgs, interval_s, duration_s, start,
                                              tls=tls)
        if rounds >= 1:
            sampler.join(timeout=1)
        if agent.poll() is not None:
            raise RuntimeError(f"the agent exited with {agent.returncode} (see its log)")
        bb_cpu, agent_cpu = proc_cpu_seconds(bb.pid), proc_cpu_seconds(agent.pid)
        status, body, _ = http_get(port, "/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        other = noise.percent()
        pings = pings_by_org(body.decode())
        agent_probes = sum(sum(v.values()) for v in pings.values())
        steady = None
        if "to" in marks:
            steady = [1000 * (marks["to"][k] - marks["from"][k]) / (orgs * rounds) for k in (0, 1)]
        return {
            "bb_probes": probes,
            "bb_failed": failed,
            "bb_errors": errors,
            "bb_cpu_per_1k": 1000 * bb_cpu / probes if probes else float("inf"),
            "bb_cpu_per_1k_steady": None if steady is None else steady[0],
            "probes": agent_probes,
            "failed": sum(v.get("failure", 0) for v in pings.values()),
            "cpu_per_1k": 1000 * agent_cpu / agent_probes if agent_probes else float("inf"),
            "cpu_per_1k_steady": None if steady is None else steady[1],
            "other_pct": other,
        }
    finally:
        for proc in (agent, bb):
            if proc is not None:
                procs.stop(proc)
        procs.stop(sim)


def run_limit(procs, workdir, wrk_bin, seconds, tls=None):
    """The physical floor: wrk (one thread, one kept-alive connection, so one request in flight as
    in a probe) GETs one org's ping endpoint with a valid bearer token for `seconds`. Client CPU
    is wrk's own user + system time from wait4(2) (microseconds, not 10 ms ticks)."""
    sim, sim_port = start_sim(procs, workdir, 1, tls)
    wrk = None
    try:
        conn = connect(sim_port, tls=tls)
        try:
            form = "grant_type=client_credentials&client_id=sim00000&client_secret=secret00000"
            conn.request("POST", "/v2/client/oauth2/token", body=form,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
            resp = conn.getresponse()
            answer = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"the token endpoint answered {resp.status}")
            token = json.loads(answer)["access_token"]
        finally:
            conn.close()
        # The token goes to wrk's argv, a local test credential of this simulator only.
        wrk = procs.start([wrk_bin, "-t1", "-c1", f"-d{seconds:g}s", "-H",
                           f"Authorization: Bearer {token}",
                           f"{sim_url(sim_port, tls)}/v2/client/sim00000/ping"],
                          workdir / f"wrk-{sim_port}.log")
        _pid, status, usage = os.wait4(wrk.pid, 0)
        wrk.returncode = os.waitstatus_to_exitcode(status)
        procs.running.remove(wrk)
        output = (workdir / f"wrk-{sim_port}.log").read_text()
        found = re.search(r"(\d+) requests in", output)
        if wrk.returncode != 0 or found is None:
            raise RuntimeError(f"wrk failed ({wrk.returncode}): {output[-500:]}")
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
        requests = int(found.group(1))
        cpu = usage.ru_utime + usage.ru_stime
        return {"requests": requests, "non_2xx": int(bad.group(1)) if bad else 0, "cpu_s": cpu,
                "cpu_per_1k": 1000 * cpu / requests if requests else float("inf")}
    finally:
        if wrk is not None and wrk.returncode is None:
            procs.stop(wrk)
        procs.stop(sim)

