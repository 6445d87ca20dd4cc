"""Scale-out through Ray Serve: throughput of 16 demo-model jobs on 1 vs 2 CPU replicas, and the latency one job
gains going through Ray Serve instead of the in-process engine.

Baselines in the same run: the 1-replica throughput, and the local engine's latency. Targets: >= 1.7x with two
replicas (one torch thread each; needs two free cores), <= 50 ms added median latency.
Run: python benchmarks/scale_out.py [--jobs 16] [--steps 20] [--latency-runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

THROUGHPUT_TARGET = 1.7
LATENCY_TARGET_MS = 50.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--latency-runs", type=int, default=15)
    args = parser.parse_args()

    import torch
    from ray import serve

    from ldm_ui.backends.ray_engine import RayEngine, connect
    from ldm_ui.config import AppConfig
    from ldm_ui.engine.engine import Engine
    from ldm_ui.requests import Txt2ImgRequest

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="ldm-scale-out-"))

    def config(replicas: int) -> AppConfig:
        return AppConfig(outputs_dir=work / "outputs", cache_dir=work / "cache", backend="ray", replicas=replicas,
                         replicas_cpu=True)

    def request(seed: int) -> Txt2ImgRequest:
        return Txt2ImgRequest(prompt="a red circle on a blue background", seed=seed, steps=args.steps)

    def throughput(engine) -> float:
        for seed in range(2 * engine.concurrency):  # warm every replica
            engine.generate(request(seed))
        started = time.perf_counter()
        jobs = [engine.submit(request(1000 + i)) for i in range(args.jobs)]
        for job in jobs:
            job.wait()
        return args.jobs / (time.perf_counter() - started)

    def latency_ms(ray_engine, local_engine) -> tuple[float, float]:
        """Median ms of one job on each, alternating, so both see the same machine load."""
        times: dict[object, list[float]] = {ray_engine: [], local_engine: []}
        for seed in range(args.latency_runs + 1):
            for engine in (ray_engine, local_engine):
                started = time.perf_counter()
                engine.generate(request(seed))
                if seed:  # the first round warms both up
                    times[engine].append((time.perf_counter() - started) * 1000)
        return statistics.median(times[ray_engine]), statistics.median(times[local_engine])

    connect(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False)
    try:
        rates = {}
        for replicas in (1, 2):
            engine = RayEngine(config(replicas)).start()
            rates[replicas] = throughput(engine)
            if replicas == 1:
                local = Engine(AppConfig(outputs_dir=work / "local-outputs", cache_dir=work / "cache")).start()
                ray_ms, local_ms = latency_ms(engine, local)
                local.shutdown()
            engine.shutdown()
    finally:
        serve.shutdown()
        import ray

        ray.shutdown()

    ratio = rates[2] / rates[1]
    added = ray_ms - local_ms
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"throughput, {args.jobs} jobs x {args.steps} steps: 1 replica {rates[1]:.2f} jobs/s, "
          f"2 replicas {rates[2]:.2f} jobs/s -> {ratio:.2f}x (target >= {THROUGHPUT_TARGET}x: "
          f"{'met' if ratio >= THROUGHPUT_TARGET else 'NOT met'})")
    print(f"latency of one job, median of {args.latency_runs}: local {local_ms:.1f} ms, Ray Serve {ray_ms:.1f} ms "
          f"-> +{added:.1f} ms (target <= {LATENCY_TARGET_MS:.0f} ms: {'met' if added <= LATENCY_TARGET_MS else 'NOT met'})")


if __name__ == "__main__":
    main()
