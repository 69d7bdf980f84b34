"""The report: medians, formatting, verdicts and the table's rows for each section."""

import statistics

from .targets import (CPU_RATIO_MAX, LIMIT_FACTOR_MAX, TARGET_CPU_PCT, TARGET_HOST_BYTES,
                      TARGET_HOST_METRICS_S, TARGET_HOST_SERIES, TARGET_LATENESS_S,
                      TARGET_METRICS_S, TARGET_RSS_MB)


def median(results, key):
    values = [r[key] for r in results if r.get(key) is not None]
    return statistics.median(values) if values else None


def verdict(ok):
    return "PASS" if ok else "FAIL"


class Table:
    def __init__(self):
        self.rows = []

    def section(self, title):
        self.rows.append((title, None, None, None))

    def add(self, figure, measured, target="", ok=None):
        self.rows.append(("  " + figure, measured, target, "" if ok is None else verdict(ok)))

    def print(self):
        width = max(len(r[0]) for r in self.rows)
        mwidth = max(len(r[1] or "") for r in self.rows)
        twidth = max(len(r[2] or "") for r in self.rows)
        header = f"{'figure':<{width}}  {'measured':>{mwidth}}  {'target':<{twidth}}  result"
        print(header)
        print("-" * len(header))
        for figure, measured, target, result in self.rows:
            if measured is None:
                print(figure)
            else:
                print(f"{figure:<{width}}  {measured:>{mwidth}}  {target:<{twidth}}  {result}"
                      .rstrip())

    def failures(self):
        return [r[0].strip() for r in self.rows if r[3] == "FAIL"]


def fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def with_jitter(jitter):
    return f" (agent jitter {jitter:g} x interval)" if jitter else ""


def fraction(ratio):
    """0.043 -> "1/23"."""
    return "0" if not ratio else f"1/{1 / ratio:.0f}"


def report_compare(table, orgs, interval_s, duration_s, bb, ours, jitter=None):
    table.section(f"obf-exporter vs blackbox_exporter: {orgs} orgs, every {interval_s:g} s, "
                  f"{duration_s:g} s{with_jitter(jitter)}, median of {len(ours)}")
    for name, runs in (("blackbox_exporter", bb), ("obf-exporter", ours)):
        table.add(f"{name}: probes", fmt(median(runs, "probes"), ".0f"))
        table.add(f"{name}: CPU s per 1,000 probes", fmt(median(runs, "cpu_per_1k"), ".3f"))
        table.add(f"{name}: CPU s per 1,000 probes after the first round",
                  fmt(median(runs, "cpu_per_1k_steady"), ".3f"))
    ratio = median(ours, "cpu_per_1k") / median(bb, "cpu_per_1k")
    table.add("CPU per probe, obf-exporter / blackbox", fraction(ratio),
              "<= 1/20", ratio <= CPU_RATIO_MAX)
    steady_ours, steady_bb = median(ours, "cpu_per_1k_steady"), median(bb, "cpu_per_1k_steady")
    if steady_ours is not None and steady_bb:
        table.add("  the same after the first round", fraction(steady_ours / steady_bb))
    table.add("blackbox_exporter: token requests per 1,000 probes",
              fmt(median(bb, "tokens_per_1k"), ".0f"))
    table.add("obf-exporter: token requests per 1,000 probes",
              fmt(median(ours, "tokens_per_1k"), ".1f"))
    table.add("obf-exporter: tokens issued", fmt(median(ours, "tokens_issued"), ".0f"),
              f"= {orgs} (orgs)", all(r["tokens_issued"] == orgs for r in ours))
    table.add("blackbox_exporter: 429s from the token endpoint",
              fmt(median(bb, "rate_limited"), ".0f"))
    table.add("blackbox_exporter: failed probes (probe_success 0)", fmt(median(bb, "failed"), ".0f"))
    table.add("obf-exporter: 429s from the token endpoint", fmt(median(ours, "rate_limited"), ".0f"),
              "0", all(r["rate_limited"] == 0 for r in ours))
    table.add("obf-exporter: failed probes", fmt(median(ours, "failed"), ".0f"))
    table.add("blackbox_exporter: RSS MB", fmt(median(bb, "rss_mb"), ".1f"))
    table.add("obf-exporter: RSS MB", fmt(median(ours, "rss_mb"), ".1f"))
    table.add("CPU of other processes during the runs, % of a core",
              fmt(median(bb + ours, "other_pct"), ".0f"))


def report_agent(table, orgs, interval_s, duration_s, runs, targets, jitter=None):
    table.section(f"obf-exporter: {orgs:,} orgs, every {interval_s:g} s, {duration_s:g} s"
                  f"{with_jitter(jitter)}, median of {len(runs)}")
    cpu = median(runs, "cpu_pct")
    rss = median(runs, "rss_mb")
    late = median(runs, "lateness_p99")
    metrics_s = median(runs, "metrics_s")
    if targets:
        table.add("CPU, % of one core (whole run)", fmt(cpu, ".2f"), f"<= {TARGET_CPU_PCT:g} %",
                  cpu <= TARGET_CPU_PCT)
    else:
        table.add("CPU, % of one core (whole run)", fmt(cpu, ".2f"))
    table.add("CPU, % of one core (after the first round)", fmt(median(runs, "cpu_pct_steady"), ".2f"))
    table.add("CPU s per 1,000 probes", fmt(median(runs, "cpu_per_1k"), ".3f"))
    table.add("CPU s per 1,000 probes after the first round",
              fmt(median(runs, "cpu_per_1k_steady"), ".3f"))
    if targets:
        table.add("RSS MB at the end", fmt(rss, ".1f"), f"<= {TARGET_RSS_MB:g} MB",
                  rss <= TARGET_RSS_MB)
    else:
        table.add("RSS MB at the end", fmt(rss, ".1f"))
    table.add("peak RSS MB (VmHWM)", fmt(median(runs, "hwm_mb"), ".1f"))
    p50 = median(runs, "lateness_p50")
    table.add("schedule lateness p50, ms (bucket bound)", fmt(None if p50 is None else p50 * 1000, "g"))
    late_ms = None if late is None else late * 1000
    if targets:
        table.add("schedule lateness p99, ms (bucket bound)", fmt(late_ms, "g"),
                  f"<= {TARGET_LATENESS_S * 1000:g} ms",
                  late is not None and late <= TARGET_LATENESS_S)
    else:
        table.add("schedule lateness p99, ms (bucket bound)", fmt(late_ms, "g"))
    if targets:
        table.add("/metrics response time, ms", fmt(metrics_s * 1000, ".1f"),
                  f"<= {TARGET_METRICS_S * 1000:g} ms", metrics_s <= TARGET_METRICS_S)
    else:
        table.add("/metrics response time, ms", fmt(metrics_s * 1000, ".1f"))
    table.add("/metrics size, KB", fmt(median(runs, "metrics_bytes") / 1024, ".0f"))
    table.add("probes (successful + failed)", fmt(median(runs, "probes"), ".0f"))
    table.add("failed probes", fmt(median(runs, "failed"), ".0f"))
    table.add("tokens issued", fmt(median(runs, "tokens_issued"), ".0f"), f"= {orgs} (orgs)",
              all(r["tokens_issued"] == orgs for r in runs))
    table.add("429s from the token endpoint", fmt(median(runs, "rate_limited"), ".0f"), "0",
              all(r["rate_limited"] == 0 for r in runs))
    table.add("CPU of other processes during the runs, % of a core",
              fmt(median(runs, "other_pct"), ".0f"))


def report_side(table, label, orgs, interval_s, duration_s, bb, ours, together, ratio_max):
    """Separate runs (each prober with its own simulator) and simultaneous runs (both against one
    simulator). The ratio of whole-run CPU per probe is judged in both."""
    table.section(f"{label}, {orgs} orgs, every {interval_s:g} s, {duration_s:g} s, "
                  f"median of {len(ours)}")
    target = f"<= {fraction(ratio_max)}"
    for title, bb_runs, our_runs, prefix in (
            ("separately (one simulator each)", bb, ours, ""),
            ("at the same time (one simulator)", together, together, "bb_")):
        table.add(title, "")
        bb_cpu, our_cpu = median(bb_runs, prefix + "cpu_per_1k"), median(our_runs, "cpu_per_1k")
        table.add("  blackbox_exporter: CPU s per 1,000 probes", fmt(bb_cpu, ".3f"))
        table.add("    after the first round",
                  fmt(median(bb_runs, prefix + "cpu_per_1k_steady"), ".3f"))
        table.add("  obf-exporter: CPU s per 1,000 probes", fmt(our_cpu, ".3f"))
        table.add("    after the first round", fmt(median(our_runs, "cpu_per_1k_steady"), ".3f"))
        ratio = our_cpu / bb_cpu if bb_cpu and our_cpu is not None else None
        table.add("  CPU per probe, obf-exporter / blackbox", fraction(ratio) if ratio else "n/a",
                  target, ratio is not None and ratio <= ratio_max)
        bb_steady = median(bb_runs, prefix + "cpu_per_1k_steady")
        our_steady = median(our_runs, "cpu_per_1k_steady")
        if bb_steady and our_steady is not None:
            table.add("    the same after the first round", fraction(our_steady / bb_steady))
        table.add("  probes, blackbox_exporter / obf-exporter",
                  f"{fmt(median(bb_runs, prefix + 'probes'), '.0f')} / "
                  f"{fmt(median(our_runs, 'probes'), '.0f')}")
        table.add("  failed probes, blackbox_exporter / obf-exporter",
                  f"{fmt(median(bb_runs, prefix + 'failed'), '.0f')} / "
                  f"{fmt(median(our_runs, 'failed'), '.0f')}")
    table.add("CPU of other processes during the runs, % of a core",
              fmt(median(bb + ours + together, "other_pct"), ".0f"))


def report_limit(table, seconds, limits, agent_plain, agent_https):
    """wrk's CPU per request, and the agent's steady CPU per probe (from its separate runs in
    `together` and `https`) against twice that."""
    table.section(f"limit: wrk, 1 thread, 1 kept-alive connection, {seconds:g} s, "
                  f"median of {len(next(iter(limits.values())))}")
    for scheme, agent_runs in (("plain HTTP", agent_plain), ("HTTPS", agent_https)):
        runs = limits.get(scheme)
        if not runs:
            continue
        floor = median(runs, "cpu_per_1k")
        table.add(f"wrk over {scheme}: CPU s per 1,000 requests", fmt(floor, ".4f"))
        table.add(f"wrk over {scheme}: requests (non-2xx)",
                  f"{fmt(median(runs, 'requests'), '.0f')} ({fmt(median(runs, 'non_2xx'), '.0f')})")
        ours = median(agent_runs, "cpu_per_1k_steady") if agent_runs else None
        if ours is None or not floor:
            table.add(f"obf-exporter / wrk over {scheme}, after the first round",
                      "n/a", f"<= {LIMIT_FACTOR_MAX:g}x (needs {'together' if scheme == 'plain HTTP' else 'https'})")
        else:
            table.add(f"obf-exporter / wrk over {scheme}, after the first round",
                      f"{ours / floor:.1f}x", f"<= {LIMIT_FACTOR_MAX:g}x",
                      ours / floor <= LIMIT_FACTOR_MAX)


def report_host(table, orgs, interval_s, duration_s, runs):
    """`latency_histograms = "host"`: /metrics time, series and bytes per org."""
    table.section(f'obf-exporter, latency_histograms = "host": {orgs:,} orgs, every '
                  f"{interval_s:g} s, {duration_s:g} s, median of {len(runs)}")
    metrics_s = median(runs, "metrics_s")
    table.add("/metrics response time, ms", fmt(metrics_s * 1000, ".1f"),
              f"<= {TARGET_HOST_METRICS_S * 1000:g} ms", metrics_s <= TARGET_HOST_METRICS_S)
    series = median(runs, "metrics_org_series") / orgs
    table.add("series per org (samples labelled org / orgs)", fmt(series, ".1f"),
              f"<= {TARGET_HOST_SERIES:g}", series <= TARGET_HOST_SERIES)
    table.add("all series / orgs", fmt(median(runs, "metrics_series") / orgs, ".2f"))
    per_org = median(runs, "metrics_bytes") / orgs
    table.add("/metrics bytes per org", fmt(per_org, ".0f"), f"<= {TARGET_HOST_BYTES:g}",
              per_org <= TARGET_HOST_BYTES)
    table.add("/metrics size, KB", fmt(median(runs, "metrics_bytes") / 1024, ".0f"))
    table.add("CPU s per 1,000 probes after the first round",
              fmt(median(runs, "cpu_per_1k_steady"), ".3f"))
    table.add("failed probes", fmt(median(runs, "failed"), ".0f"))


def report_startup(table, orgs, runs):
    table.section(f"startup: {orgs:,} orgs, median of {len(runs)}")
    table.add("seconds from start until every org had a successful ping",
              fmt(median(runs, "seconds"), ".2f"))

