"""Run a stream-mode ``FaultProxy`` (TLS between namespaces) from a JSON spec.

    python proxy_process.py SPEC.json

SPEC: ``host`` to listen on, ``nodes`` ``{id: [host, port]}``, ``links``
``{"a>b": {"delay_s": .., "loss": ..}}``, ``seed``, and ``addresses_file``
where the per-pair listen addresses are written once listening, as
``{"a>b": [host, port]}``. Runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
from pathlib import Path

from quorate.ids import NodeId
from quorate.runtime.aio.faultproxy import FaultProxy, LinkFault


async def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    nodes = {NodeId(int(k)): (v[0], int(v[1])) for k, v in spec["nodes"].items()}
    proxy = FaultProxy(nodes, host=spec["host"], frames=False, rng=random.Random(spec.get("seed", 0)))
    for link, fault in spec.get("links", {}).items():
        a, b = (NodeId(int(x)) for x in link.split(">"))
        proxy.set_link(a, b, LinkFault(delay_s=fault.get("delay_s", 0.0), loss=fault.get("loss", 0.0)))
    await proxy.start()
    addresses = {f"{a}>{b}": list(proxy.address_for(a, b)) for a in nodes for b in nodes if a != b}
    target = Path(spec["addresses_file"])
    target.with_suffix(".tmp").write_text(json.dumps(addresses))
    target.with_suffix(".tmp").replace(target)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    Path(spec["metrics_file"]).write_text(json.dumps(dict(proxy.metrics)))
    await proxy.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
