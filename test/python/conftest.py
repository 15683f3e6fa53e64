# SPDX-License-Identifier: Apache-2.0
"""Real plexus-broker processes for the Python package's tests.

Binaries: --broker/--cli/--shipping options, else $PLEXUS_BROKER_BIN,
$PLEXUS_CLI_BIN, $PLEXUS_SHIPPING_BIN, else build/dev of the source tree.
Brokers listen on tcp://127.0.0.1:<free port> in a temp dir; readiness is a
WELCOME within a deadline, never a fixed sleep."""
import asyncio
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest

sys.dont_write_bytecode = True
ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "framework" / "python"))

import msgpack  # noqa: E402
import zmq  # noqa: E402

SECRET = "python-suite cluster secret"


def pytest_addoption(parser):
    parser.addoption("--broker", default=os.environ.get("PLEXUS_BROKER_BIN"))
    parser.addoption("--cli", default=os.environ.get("PLEXUS_CLI_BIN"))
    parser.addoption("--shipping", default=os.environ.get("PLEXUS_SHIPPING_BIN"))


def _bin(config, opt, default):
    path = config.getoption(opt) or str(ROOT / default)
    return path


@pytest.fixture(scope="session")
def broker_bin(pytestconfig):
    path = _bin(pytestconfig, "--broker", "build/dev/brokers/plexus-broker")
    if not os.access(path, os.X_OK):
        pytest.fail(f"no plexus-broker at {path} (--broker PATH)")
    return path


@pytest.fixture(scope="session")
def cli_bin(pytestconfig):
    return _bin(pytestconfig, "--cli", "build/dev/framework/plexus")


@pytest.fixture(scope="session")
def shipping_bin(pytestconfig):
    return _bin(pytestconfig, "--shipping", "build/dev/samples/shipping")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout, what="condition", step=0.01):
    """Polls `cond` until true or the deadline: synchronisation on a condition."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def async_wait_until(cond, timeout, what="condition", step=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        await asyncio.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Broker:
    def __init__(self, binary, tmp, bid, peers=(), extra=(), port=None, probe_creds=None):
        self.id = bid
        self.probe_creds = probe_creds  # a plexus.creds.Credentials for a broker with --auth
        self.port = port or free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.log_path = pathlib.Path(tmp) / f"broker-{bid}.log"
        self.args = [binary, "--listen", self.endpoint, "--id", bid, "--log-level", "warn"]
        for p in peers:
            self.args += ["--peer", p]
        self.args += list(extra)
        env = dict(os.environ, PLEXUS_CLUSTER_SECRET=SECRET)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env, cwd=tmp)
        try:
            self.wait_ready()
        except BaseException:
            self.stop()  # never leave a broker that did not become ready behind
            raise

    def wait_ready(self, timeout=10.0):
        ctx = zmq.Context.instance()
        deadline = time.monotonic() + timeout
        hello = msgpack.packb({0: 1, 1: 1, 21: f"probe-{self.id}"})
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker {self.id} exited with {self.proc.returncode}: "
                                   + self.log_path.read_text(errors="replace")[-2000:])
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            if self.probe_creds is not None:
                s.curve_serverkey = self.probe_creds.broker_key.encode()
                s.curve_publickey = self.probe_creds.public_key.encode()
                s.curve_secretkey = self.probe_creds.secret_key.encode()
            s.connect(self.endpoint)
            try:
                s.send(hello)
                if s.poll(200):
                    s.recv_multipart()
                    s.send(msgpack.packb({0: 1, 1: 14}))  # BYE
                    return
            finally:
                s.close(0)
        raise RuntimeError(f"broker {self.id} not ready within {timeout} s")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def start_broker(broker_bin, tmp_path):
    started = []

    def start(bid="b1", peers=(), extra=(), port=None, probe_creds=None):
        b = Broker(broker_bin, tmp_path, bid, peers, extra, port, probe_creds)
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


@pytest.fixture
def broker(start_broker):
    return start_broker("b1")
