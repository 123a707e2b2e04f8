"""``python -m bench [--quick]``: run every measurement, write BENCHMARKS.md and the plot."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import (
    Bench,
    batching,
    concurrency,
    embedded,
    replicas,
    report,
    roundtrips,
    server_load,
    tgi_route,
    throughput,
    ttft,
    uploads,
    upstreams,
)

# The client measurements first: section 4 reads its client process's peak RSS, which a
# process forked after the embedded engine was loaded here would inherit.
MEASUREMENTS = (
    throughput,
    roundtrips,
    ttft,
    concurrency,
    server_load,
    embedded,
    uploads,
    tgi_route,
    replicas,
    batching,
    upstreams,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (about a minute)")
    parser.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"))
    parser.add_argument("--plot", type=Path, default=Path("bench/results/plot.png"))
    args = parser.parse_args(argv)
    command = "python -m bench" + (" --quick" if args.quick else "")
    start = time.perf_counter()
    sections = []
    with tempfile.TemporaryDirectory(prefix="h2o-bench-") as workdir:
        bench = Bench(args.quick, Path(workdir))
        for module in MEASUREMENTS:
            print(f"bench: {module.__name__} ...", file=sys.stderr, flush=True)
            sections.append(module.run(bench))
    sections.sort(key=lambda section: section.number)
    report.plot(sections, args.plot)
    plot_link = os.path.relpath(args.plot, args.output.resolve().parent)
    seconds = time.perf_counter() - start
    args.output.write_text(report.markdown(sections, command, plot_link, seconds))
    print(report.table(sections))
    print(f"\nwrote {args.output} and {args.plot} in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
