# SPDX-License-Identifier: Apache-2.0
"""plexus.Client and plexus.Node against a broker with --auth (CurveZMQ and
its ZAP handler): keys and credentials files made with the `plexus` CLI."""
import asyncio
import os
import subprocess

import pytest

import plexus
from plexus import creds, errors
from conftest import async_wait_until


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


class Keyring:
    """A broker key pair, alice (listed: orders.> both ways), mallory (keys
    made, not listed), alice's keys with another broker's public key, and the
    auth file: all made with the CLI, as a user would."""

    def __init__(self, cli, folder):
        self.dir = folder
        self.cli = cli
        self.keys("broker", self.path("broker"))
        self.alice_public = self.user("alice")
        self.user("mallory")
        other = self.keys("broker", self.path("other"))
        alice = creds.read_credentials(self.path("alice.creds"))
        with open(self.path("wrong.creds"), "w") as f:
            f.write(f'user = "alice"\npublic_key = "{alice.public_key}"\n'
                    f'secret_key = "{alice.secret_key}"\nbroker_key = "{other}"\n')
        with open(self.path("auth.toml"), "w") as f:
            f.write('secret_key_file = "broker.key"\n'
                    "[[users]]\n"
                    'name = "alice"\n'
                    f'public_key = "{self.alice_public}"\n'
                    'publish_allow = ["orders.>"]\n'
                    'subscribe_allow = ["orders.>"]\n')

    def path(self, name):
        return str(self.dir / name)

    def keys(self, *args):
        r = subprocess.run([self.cli, "keys", *args], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout.splitlines()[0].strip()  # the public key

    def user(self, name):
        return self.keys("user", self.path(name), "--broker-key", self.path("broker.pub"))


@pytest.fixture
def keyring(cli_bin, tmp_path):
    if not os.access(cli_bin, os.X_OK):
        pytest.fail(f"no plexus CLI at {cli_bin} (--cli PATH)")
    return Keyring(cli_bin, tmp_path)


@pytest.fixture
def auth_broker(start_broker, keyring):
    return start_broker("auth", extra=["--auth", keyring.path("auth.toml")],
                        probe_creds=creds.read_credentials(keyring.path("alice.creds")))


def test_a_listed_user_publishes_and_subscribes_with_its_credentials(auth_broker, keyring):
    async def main():
        alice = await plexus.Client(auth_broker.endpoint, name="py-alice",
                                    creds=keyring.path("alice.creds")).connect()
        assert alice.connected and alice.broker == "auth"
        got = []
        sub = await alice.subscribe("orders.>", lambda m: got.append((m.topic, m.payload)))
        assert sub.error is None
        alice.publish("orders.new", b"plain")
        assert await alice.publish_confirmed("orders.eu", b"confirmed") == 0
        await async_wait_until(lambda: len(got) == 2, 5, "alice's two messages")
        assert got == [("orders.new", b"plain"), ("orders.eu", b"confirmed")]
        # A Credentials object does as well as the file's path.
        again = await plexus.Client(auth_broker.endpoint,
                                    creds=creds.read_credentials(keyring.path("alice.creds"))
                                    ).connect()
        again.publish("orders.again", b"x")
        await async_wait_until(lambda: len(got) == 3, 5, "the second client's message")
        await again.close()
        await alice.close()
    run(main())


def test_a_client_without_credentials_or_with_unknown_keys_is_refused_and_says_why(
        auth_broker, keyring):
    async def main():
        with pytest.raises(plexus.HandshakeFailed) as plain:
            await plexus.Client(auth_broker.endpoint).connect(timeout=8)
        assert "--auth" in str(plain.value) and "creds" in str(plain.value), str(plain.value)
        with pytest.raises(plexus.HandshakeFailed) as mallory:
            await plexus.Client(auth_broker.endpoint,
                                creds=keyring.path("mallory.creds")).connect(timeout=8)
        assert "refused this client's CURVE key" in str(mallory.value), str(mallory.value)
        with pytest.raises(plexus.HandshakeFailed) as wrong:
            await plexus.Client(auth_broker.endpoint,
                                creds=keyring.path("wrong.creds")).connect(timeout=8)
        assert "is the broker key right" in str(wrong.value), str(wrong.value)
        assert isinstance(wrong.value, ConnectionError)
        # Nothing they tried reached anyone: alice, listed, hears only her own.
        alice = await plexus.Client(auth_broker.endpoint,
                                    creds=keyring.path("alice.creds")).connect()
        got = []
        await alice.subscribe("orders.>", lambda m: got.append(m.payload))
        alice.publish("orders.marker", b"m")
        await async_wait_until(lambda: got, 5, "alice's marker")
        await alice.ping()
        assert got == [b"m"]
        await alice.close()
    run(main())


def test_what_the_auth_file_denies_is_permission_denied(auth_broker, keyring):
    async def main():
        alice = await plexus.Client(auth_broker.endpoint, name="py-alice2",
                                    creds=keyring.path("alice.creds")).connect()
        with pytest.raises(plexus.PermissionDenied) as pub:
            await alice.publish_confirmed("billing.x", b"nope")
        assert pub.value.code == errors.PERMISSION_DENIED
        assert await alice.publish_confirmed("billing.x", b"nope", raise_on_error=False) == 114
        with pytest.raises(plexus.PermissionDenied):
            await alice.subscribe("billing.>", lambda m: None)
        with pytest.raises(plexus.PermissionDenied):
            await alice.request("billing.quote", b"?", timeout=5)
        # Still a session, and what is allowed still works.
        got = []
        await alice.subscribe("orders.>", lambda m: got.append(m.payload))
        assert await alice.publish_confirmed("orders.ok", b"ok") == 0
        await async_wait_until(lambda: got == [b"ok"], 5, "the allowed message")
        assert alice.connected
        await alice.close()
    run(main())


def test_a_node_takes_credentials_from_creds_argv_or_the_environment(auth_broker, keyring,
                                                                       monkeypatch):
    async def main(node):
        seen = []

        @node.function("take", on="orders.in", service="shipping")
        def take(order: dict, ctx):
            seen.append(order["id"])

        await node.start()
        alice = await plexus.Client(auth_broker.endpoint,
                                    creds=keyring.path("alice.creds")).connect()
        codes = await asyncio.gather(*(alice.publish_confirmed("orders.in", {"id": i})
                                       for i in range(5)))
        assert codes == [0] * 5
        await async_wait_until(lambda: len(seen) == 5, 5, "the node's five messages")
        # alice may not publish under $SYS: the node keeps its stats to itself
        # rather than spend its error budget (it would lose its session).
        await async_wait_until(lambda: node.sys_denied, 5, "the denied $SYS.node.<id>.up")
        await asyncio.sleep(1.2)  # a stats tick
        assert node.client.connected and node.client.stats["sessions"] == 1
        await alice.close()
        await node.stop()
        assert sorted(seen) == list(range(5))

    path = keyring.path("alice.creds")
    run(main(plexus.Node(auth_broker.endpoint, name="py-node-argv", argv=["--creds", path])))
    monkeypatch.setenv("PLEXUS_CREDS", path)
    run(main(plexus.Node(auth_broker.endpoint, name="py-node-env", argv=[])))
    monkeypatch.delenv("PLEXUS_CREDS")
    with pytest.raises(plexus.CredsError):
        plexus.Node(auth_broker.endpoint, argv=["--creds", keyring.path("missing.creds")])


def test_a_bad_credentials_file_is_one_clear_error(tmp_path, keyring):
    good = creds.read_credentials(keyring.path("alice.creds"))
    assert good.user == "alice" and creds.is_z85_key(good.broker_key)
    assert good.secret_key not in repr(good)
    cases = {
        "missing": (None, "cannot read the credentials file"),
        "unknown": ('user = "a"\nextra = "x"\n', "unknown key 'extra'"),
        "short": (f'user = "a"\npublic_key = "abc"\nsecret_key = "{good.secret_key}"\n'
                  f'broker_key = "{good.broker_key}"\n', "public_key must be a CURVE key"),
        "nouser": (f'public_key = "{good.public_key}"\nsecret_key = "{good.secret_key}"\n'
                   f'broker_key = "{good.broker_key}"\n', "no 'user'"),
        "notoml": ("user = \n", "notoml"),
    }
    for name, (text, says) in cases.items():
        path = tmp_path / f"{name}.creds"
        if text is not None:
            path.write_text(text)
        with pytest.raises(plexus.CredsError) as e:
            plexus.Client("tcp://127.0.0.1:1", creds=str(path))
        assert str(e.value).startswith(str(path)) and says in str(e.value), str(e.value)
    assert not creds.is_z85_key("#" * 40)  # Z85 characters, but past 32 bits a group
