"""The targets the bench judges against, and the paths and address it uses."""

from pathlib import Path

# bench/obfbench/targets.py: the repository is three levels up.
ROOT = Path(__file__).resolve().parent.parent.parent
AGENT_BIN = ROOT / "target" / "release" / "obf-exporter"
FLEET_CONFIG = ROOT / "bench" / "fleet-config"
HOST = "127.0.0.1"

# Targets from the issue.
CPU_RATIO_MAX = 1 / 20          # agent CPU per probe / blackbox CPU per probe
TARGET_CPU_PCT = 5.0            # % of one core, 10,000 orgs at 60 s
TARGET_RSS_MB = 64.0
TARGET_LATENESS_S = 0.050
TARGET_METRICS_S = 0.050
HTTPS_RATIO_MAX = 1 / 50        # the same over HTTPS (CA + leaf)
# The together and https sections probe every second: at OBF's one token per client per 10 s,
# blackbox_exporter (a token request with every probe) would get 429 for 9 probes in 10 and skip
# the ping, i.e. be measured on a cheaper, failing job. Their simulators issue tokens without
# spacing, so both probers do the whole job; the agent still asks for one token per org.
SIDE_TOKEN_SPACING_MS = 0
LIMIT_FACTOR_MAX = 2.0          # agent CPU per probe / wrk's CPU per request (keep-alive floor)
TARGET_HOST_METRICS_S = 0.020   # /metrics at 10,000 orgs with latency_histograms = "host"
TARGET_HOST_SERIES = 16         # series per org in "host" mode
TARGET_HOST_BYTES = 1024        # /metrics bytes per org in "host" mode
