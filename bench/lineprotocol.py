"""Line protocol formatting: influxdb-client's ``Point`` against central's direct formatting.

.venv/bin/python -m bench.lineprotocol [--readings 500] [--rounds 200]
"""

import argparse
import time

import wire
from central.lineprotocol import Encoder


def _message(n: int) -> wire.Telemetry:
    readings = [
        {
            "device": f"dev-{i % 10}",
            "metric": f"m{i // 10}",
            "value": i * 1.5,
            "ts": 1_700_000_000_000 + i,
        }
        for i in range(n)
    ]
    return wire.Telemetry(gateway="gw-bench", seq=1, site="kota bogor", readings=readings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lineprotocol", description=__doc__)
    parser.add_argument("--readings", type=int, default=500, help="readings per message")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args(argv)
    from influxdb_client import Point, WritePrecision

    message = _message(args.readings)
    payload = wire.encode(message)
    encoder = Encoder()

    def direct() -> bytes:
        return ("\n".join(encoder.telemetry(message)) + "\n").encode()

    def point() -> bytes:
        lines = []
        for r in message.readings:
            p = (
                Point("readings")
                .tag("device", r.device)
                .tag("gateway", message.gateway)
                .tag("site", message.site)
                .field(r.metric, float(r.value))  # type: ignore[arg-type]
                .time(r.ts, WritePrecision.MS)
            )
            lines.append(p.to_line_protocol())
        return ("\n".join(lines) + "\n").encode()

    def decode() -> object:
        return wire.decode("telemetry", payload, topic_gateway="gw-bench")

    results = {}
    for name, fn in (("wire.decode (pydantic)", decode), ("direct", direct), ("Point", point)):
        fn()
        started = time.perf_counter()
        for _ in range(args.rounds):
            fn()
        per_reading = (time.perf_counter() - started) / args.rounds / args.readings
        results[name] = per_reading
    print(f"{'what':<24} {'us/reading':>10} {'us/10 points':>13} {'readings/s':>12}")
    for name, seconds in results.items():
        print(f"{name:<24} {seconds * 1e6:>10.2f} {seconds * 1e7:>13.1f} {1 / seconds:>12,.0f}")
    print(f"Point / direct: {results['Point'] / results['direct']:.1f}x slower")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
