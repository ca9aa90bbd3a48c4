"""Memory a worker spends per device: its RSS while 100 000 devices publish their context.

Starts a broker (the embedded Tansu unless ``--broker``) and one worker, reads
the worker's resident memory, publishes one realistic context per device (a
kitchen speaker: type, place, locale, three appliance states, twenty contacts,
five appliance names, a few history items; about 700 bytes of JSON), and after
every quarter waits until the worker's context agent has taken them all
(``voicestream_contexts_total`` on its metrics endpoint) and reads its RSS
again. Every worker holds every device's context (a global table, in memory),
so this is the cost per device of each worker in a group.

With ``--table-store rocksdb`` the tables live on disk (infra/store.py) and the
figures show what a worker then holds in memory; the size of its table files
is printed beside them.

Run: python -m benchmarks.bench_context_memory [--devices 100000] [--broker URL]
     [--table-store memory|rocksdb]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import time
import urllib.request
from pathlib import Path

from aiokafka import AIOKafkaProducer

from infra.process import Process, env_with
from streams import topics
from streams.codec import encode
from streams.connection import Connection
from streams.context import DeviceContext

FIRST = ("Ann", "Bo", "Cyril", "Dana", "Eitan", "Fiona", "Gita", "Hugo", "Ines", "Jonas")
LAST = ("Kowalczyk", "Okafor", "Lindqvist", "Moreau", "Nakamura", "Oliveira")


def context(i: int) -> DeviceContext:
    contacts = tuple(f"{FIRST[(i + k) % 10]} {LAST[(i * 7 + k) % 6]}" for k in range(20))
    return DeviceContext(
        device_id=f"mem-{i:06d}", device_type="speaker", has_screen=i % 3 == 0,
        states={"oven": "on" if i % 2 else "off", "kitchen light": "on", "tv": "off"},
        location="kitchen", locale="en-US", contacts=contacts,
        appliances=("oven", "kitchen light", "tv", "dishwasher", "fan"),
        history=("music:jazz", "timer:10m", "weather"), local_time="07:30",
        updated_at_ms=int(time.time() * 1000))


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1)) / 1024


def taken(port: int) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    match = re.search(r"^voicestream_contexts_total (\S+)$", body, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def publish(url: str, prefix: str, first: int, last: int) -> None:
    producer = AIOKafkaProducer(**Connection.parse(url).producer(linger_ms=5))
    await producer.start()
    try:
        name = topics.CONTEXT.name(prefix)
        for i in range(first, last):
            ctx = context(i)
            await producer.send(name, encode(ctx, topics.CONTEXT.codec),
                                key=ctx.device_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--broker", default="", help="join this broker instead of starting "
                        "the embedded one")
    parser.add_argument("--table-store", choices=["memory", "rocksdb"], default="memory")
    args = parser.parse_args()
    procs: list[Process] = []
    try:
        url = args.broker
        if not url:
            broker = Process(["broker"], env_with())
            procs.append(broker)
            url = broker.wait_ready(60)
        prefix = f"mem{os.getpid()}."
        data_dir = f"/tmp/vs-mem-{os.getpid()}"
        port = free_port()
        worker = Process(["up", "--metrics-port", str(port)], env_with(
            VOICESTREAM_BROKER=url, VOICESTREAM_TOPIC_PREFIX=prefix,
            VOICESTREAM_APP_ID=f"mem{os.getpid()}", VOICESTREAM_LOG_LEVEL="warning",
            VOICESTREAM_DATA_DIR=data_dir, VOICESTREAM_TABLE_STORE=args.table_store))
        procs.append(worker)
        worker.wait_ready(180)
        time.sleep(3.0)  # let the models' warm-up settle
        base = rss_mib(worker.proc.pid)
        size = len(encode(context(0), topics.CONTEXT.codec))
        print(f"worker RSS before any context: {base:.0f} MiB; one context: {size} bytes")
        print(f"tables in {args.table_store}")
        print("devices | worker RSS MiB | growth MiB | KiB per device | seconds to take | "
              "table files MiB")
        done = 0
        for quarter in range(1, 5):
            target = args.devices * quarter // 4
            started = time.monotonic()
            asyncio.run(publish(url, prefix, done, target))
            while taken(port) < target:
                time.sleep(0.5)
            done = target
            rss = rss_mib(worker.proc.pid)
            files = sum(p.stat().st_size for p in Path(data_dir).rglob("*") if p.is_file())
            print(f"{target} | {rss:.0f} | {rss - base:.0f} | "
                  f"{(rss - base) * 1024 / target:.2f} | {time.monotonic() - started:.1f} | "
                  f"{files / 2**20:.0f}", flush=True)
    finally:
        for proc in reversed(procs):
            proc.kill()


if __name__ == "__main__":
    main()
