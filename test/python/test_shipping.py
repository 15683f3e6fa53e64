# SPDX-License-Identifier: Apache-2.0
"""A Python function in the middle of the C++ shipping chain.

C++ processes (samples/shipping, --role) run the order generator,
validate-address and create-label; send-confirmation is Python. Every order
reaches it, and one order's trace, read back by `plexus trace`, shows the
C++ hops and the Python one as one tree."""
import asyncio
import os
import subprocess

import pytest

import plexus
from conftest import async_wait_until

ORDERS = 20


def test_python_send_confirmation_in_the_cpp_chain_traced_across_languages(
        broker, shipping_bin, cli_bin, tmp_path):
    for b in (shipping_bin, cli_bin):
        if not os.access(b, os.X_OK):
            pytest.skip(f"no {b}")

    async def main():
        node = plexus.Node(broker.endpoint, name="py-confirm", service="shipping",
                           trace_sample=1.0, argv=[])
        confirmed = {}
        outbox = tmp_path / "py-outbox.txt"

        @node.function("send-confirmation", on="label.created", instances=4)
        async def send_confirmation(label: dict, ctx):
            with open(outbox, "a") as f:
                f.write(f"To: {label['customer']} | Your order {label['id']} ships with "
                        f"{label['tracking']}\n")
            confirmed[label["id"]] = (ctx.trace_id, label["tracking"])

        await node.start()
        up = set()  # the C++ functions announce $SYS.node.<id>.up once subscribed
        await node.client.subscribe("$SYS.node.*.up", lambda m: up.update(m.data()))
        procs = []

        def start(role, *extra):
            log = open(tmp_path / f"{role}.log", "wb")
            procs.append(subprocess.Popen(
                [shipping_bin, "--broker", broker.endpoint, "--role", role,
                 "--trace-sample", "1", *extra],
                cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT))

        try:
            start("validate-address")
            start("create-label", "--label-ms", "0")
            await async_wait_until(
                lambda: {"shipping.validate-address", "shipping.create-label"} <= up
                or any(p.poll() is not None for p in procs), 30, "the C++ functions to be up")
            start("generator", "--orders", str(ORDERS), "--rate", "200")
            await async_wait_until(lambda: len(confirmed) == ORDERS
                                   or any(p.poll() is not None for p in procs), 60,
                                   "every order at the Python function")
            assert sorted(confirmed) == list(range(1, ORDERS + 1)), [
                (tmp_path / f).read_text(errors="replace")[-1000:] for f in
                ("validate-address.log", "create-label.log", "generator.log")]
            assert confirmed[7][1] == "PX100007"  # the C++ label, read as a dict
            trace_id = confirmed[7][0]
            p = await asyncio.create_subprocess_exec(
                cli_bin, "--broker", broker.endpoint, "trace", trace_id, "--wait", "1500ms",
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            out, _ = await asyncio.wait_for(p.communicate(), 20)
            text = out.decode()
            assert p.returncode == 0, text
            lines = text.splitlines()
            # One tree: C++ validate-address -> C++ create-label -> Python send-confirmation.
            assert len(lines) == 3, text
            assert lines[0].startswith("ok shipping.validate-address on orders.shipped"), text
            assert lines[1].startswith("  ok shipping.create-label on address.validated"), text
            assert lines[2].startswith("    ok shipping.send-confirmation on label.created"), text
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            await node.stop()
        assert len(outbox.read_text().splitlines()) == ORDERS

    asyncio.run(asyncio.wait_for(main(), 90))
