"""HTTP to the simulator, the agent and blackbox_exporter, and Prometheus text parsing."""

import http.client
import re
import socket
import time

from .targets import HOST


def connect(port, timeout=30.0, tls=None):
    """A plain HTTP connection, or HTTPS trusting the bench CA when `tls` is given."""
    if tls is None:
        return http.client.HTTPConnection(HOST, port, timeout=timeout)
    return http.client.HTTPSConnection(HOST, port, timeout=timeout, context=tls.context)


def http_get(port, path, timeout=30.0, tls=None):
    """(status, body, seconds until the whole body was read) on a fresh connection."""
    conn = connect(port, timeout, tls)
    try:
        start = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, body, time.perf_counter() - start
    finally:
        conn.close()


def timed_get(port, path, timeout=30.0, expect=64 << 20):
    """(status, body, seconds from sending the request until the last byte arrived). Receives
    straight into one buffer allocated before the clock starts (doubled if `expect` bytes are
    too few), as Prometheus reads into a buffer pooled by the size of earlier scrapes, and decodes
    the chunked body afterwards, outside the timed part, so the time is the server's and the
    network's, not Python's: growing a bytearray chunk by chunk, or http.client's chunk parsing,
    added 10-20 ms to a 26 MB body and varied with the state of this script's heap."""
    buf = bytearray(expect)
    buf[::4096] = bytes(len(range(0, expect, 4096)))  # fault the pages in before the clock starts
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        start = time.perf_counter()
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        view, used = memoryview(buf), 0
        while True:
            if used == len(buf):
                view.release()
                buf.extend(bytes(len(buf)))
                view = memoryview(buf)
            n = s.recv_into(view[used:])
            if not n:
                break
            used += n
        seconds = time.perf_counter() - start
        view.release()
    raw = bytes(buf[:used])
    head, _, data = raw.partition(b"\r\n\r\n")
    status = int(head.split(None, 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        body, pos = bytearray(), 0
        while True:
            eol = data.index(b"\r\n", pos)
            size = int(data[pos:eol].split(b";")[0], 16)
            if size == 0:
                break
            body += data[eol + 2:eol + 2 + size]
            pos = eol + 2 + size + 2
        data = bytes(body)
    return status, data, seconds


def wait_http(port, path, proc, timeout=30.0, tls=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} (see its log)")
        try:
            if http_get(port, path, timeout=2, tls=tls)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered http://{HOST}:{port}{path} within {timeout:.0f} s")


ORG_LABEL_RE = re.compile(rb'^[^#\n][^{\n]*\{(?:[^\n]*,)?org="', re.M)
LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metric_samples(text, name):
    """(labels, value) of every sample of `name` in a Prometheus text exposition."""
    prefix = name + "{"
    for line in text.splitlines():
        if line.startswith(prefix):
            labels, value = line[len(prefix):].rsplit("} ", 1)
            yield dict(LABEL_RE.findall(labels)), float(value.split()[0])
        elif line.startswith(name + " "):
            yield {}, float(line.split()[1])


def pings_by_org(text):
    """{org: {"success": n, "failure": n}} from obf_pings_total."""
    orgs = {}
    for labels, value in metric_samples(text, "obf_pings_total"):
        orgs.setdefault(labels["org"], {})[labels["result"]] = value
    return orgs


def histogram_quantile_le(text, name, q):
    """The smallest bucket bound `le` whose cumulative count is >= q * total (an upper bound on
    the q-quantile). None when the histogram is empty."""
    buckets = sorted((float(labels["le"]), value)
                     for labels, value in metric_samples(text, name + "_bucket"))
    total = buckets[-1][1] if buckets else 0
    if total == 0:
        return None
    return next(le for le, count in buckets if count >= q * total)
