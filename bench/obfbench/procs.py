"""Child processes (started and always stopped), free ports, /proc readings, noise, logging."""

import os
import socket
import subprocess
import sys
import time

from .targets import HOST, ROOT

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Processes: every child is registered here and stopped in `stop_all`, whatever happens.


class Processes:
    def __init__(self):
        self.running = []

    def start(self, argv, log_path):
        with open(log_path, "wb") as out:
            # A session of its own: a Ctrl-C in the terminal reaches only this script, which then
            # stops the children itself (by pid) in its `finally`.
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=ROOT, start_new_session=True)
        self.running.append(proc)
        return proc

    def stop(self, proc, grace=10.0):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self):
        for proc in list(self.running):
            try:
                self.stop(proc, grace=5.0)
            except Exception as error:  # keep stopping the others
                log(f"could not stop pid {proc.pid}: {error}")


def free_port():
    """A free loopback port: bind port 0 and let the kernel pick."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# /proc readings


def proc_cpu_seconds(pid):
    """utime + stime of one process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def proc_mem_mb(pid, key):
    """VmRSS or VmHWM of a process, in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} for pid {pid}")


def machine_busy_seconds():
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def self_cpu_seconds():
    t = os.times()
    return t.user + t.system


class Noise:
    """CPU used on the machine by processes other than the ones measured and this script, as % of
    one core over a window: other work (builds, tests) running at the same time shows up here."""

    def __init__(self, pids):
        self.pids = pids
        self.t, self.busy, self.ours = time.monotonic(), machine_busy_seconds(), self._ours()

    def _ours(self):
        total = self_cpu_seconds()
        for pid in self.pids:
            try:
                total += proc_cpu_seconds(pid)
            except OSError:
                pass
        return total

    def percent(self):
        wall = time.monotonic() - self.t
        other = (machine_busy_seconds() - self.busy) - (self._ours() - self.ours)
        return max(0.0, 100 * other / wall)

