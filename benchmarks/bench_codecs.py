"""Compare msgpack and JSON (orjson) on voicestream messages; prints a table.

Run: python benchmarks/bench_codecs.py [--n 20000]
"""

from __future__ import annotations

import argparse
import time

from streams.audio import AudioFrame
from streams.codec import Codec, decode, encode
from streams.context import DeviceContext
from streams.endpoint import Endpoint, EndpointKind
from streams.schema import Message


def samples() -> dict[str, Message]:
    """Return one representative message per kind."""
    return {
        "audio-frame (20 ms)": AudioFrame(
            device_id="kitchen-1", utterance_id="u-1", seq=7, pcm=bytes(640),
            sample_rate_hz=16000, audio_ms=140,
        ),
        "endpoint": Endpoint(
            device_id="kitchen-1", utterance_id="u-1", kind=EndpointKind.SPECULATIVE,
            revision=0, at_ms=1830, t_ms=2390,
        ),
        "device-context": DeviceContext(
            device_id="kitchen-1", has_screen=True, states={"oven": "on", "tv": "off"},
            playing={"kind": "music", "genre": "jazz"}, location="kitchen",
            contacts=tuple(f"contact {i}" for i in range(50)),
            appliances=("oven", "dishwasher", "kitchen lights"),
        ),
    }


def bench(message: Message, codec: Codec, n: int) -> tuple[float, float, int]:
    """Return (encode us, decode us, bytes) per message."""
    raw = encode(message, codec)
    start = time.perf_counter()
    for _ in range(n):
        encode(message, codec)
    enc = (time.perf_counter() - start) / n * 1e6
    start = time.perf_counter()
    for _ in range(n):
        decode(raw, codec)
    dec = (time.perf_counter() - start) / n * 1e6
    return enc, dec, len(raw)


def main() -> None:
    """Print encode/decode time and size for each codec side by side."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000, help="iterations per cell")
    args = parser.parse_args()
    print(f"{'message':24} {'codec':8} {'encode us':>10} {'decode us':>10} {'bytes':>7}")
    for name, message in samples().items():
        for codec in Codec:
            if codec is Codec.JSON and isinstance(message, AudioFrame):
                continue  # JSON cannot carry raw bytes without base64
            enc, dec, size = bench(message, codec, args.n)
            print(f"{name:24} {codec.value:8} {enc:10.2f} {dec:10.2f} {size:7d}")


if __name__ == "__main__":
    main()
