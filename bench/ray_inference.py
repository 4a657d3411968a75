"""Scoring on a Ray actor pool against scoring in-process, same bundle, same images, one run.

Both score the same decoded uint8 batches (``--images`` synthetic 224 px JPEGs decoded by the
product's own decode, batches of ``--batch``) with the same bundle (ten untrained seed_cnn
models: speed does not depend on the weights):

  local     the daemon's local backend: one FusedEnsemble in this process, batch after batch
  ray       the ray backend as the daemon drives it (daemon/ray_pool.py): ``--actors`` actors
            of ``cpus_per_actor = 1`` on a private Ray on this machine, up to actors + 1
            batches in flight, results taken in order
  one actor the same batches sent one at a time to one actor: per-actor throughput, round
            trip included

Also printed: the bytes sent per batch (the images) and returned (the pickled scores), and
where the driver's time went in the ray pass (putting batches into the object store vs
waiting for answers). Decode, routing and audit are not in these figures (bench/e2e.py has
them): this is the scoring step that the backend changes.

    .venv/bin/python bench/ray_inference.py                  # 512 images, 2 actors
    .venv/bin/python bench/ray_inference.py --images 256 --actors 1
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from bench import fixtures  # noqa: E402


def decoded_batches(folder: Path, count: int, batch: int) -> list[np.ndarray]:
    from gicls.daemon.decode import decode_batch

    paths = fixtures.write_images(folder / "images", count)
    images, failures = decode_batch([p.read_bytes() for p in paths], fixtures.IMAGE_SIZE)
    if failures:
        raise SystemExit(f"synthetic images failed to decode: {failures}")
    return [images[start : start + batch] for start in range(0, count, batch)]


def score_local(models_dir: Path, batches: list[np.ndarray]) -> float:
    from gicls.config import DEFAULT_CLASSES
    from gicls.daemon.serving import configure_threads, load_ensemble

    configure_threads()
    ensemble = load_ensemble(models_dir, DEFAULT_CLASSES, "float32", len(batches[0]))
    started = time.perf_counter()
    for images in batches:
        ensemble(images)
    return time.perf_counter() - started


def score_on_pool(ensemble, batches: list[np.ndarray], in_flight: int) -> dict[str, float]:
    """Drive the pool as loop.py does: start batches until ``in_flight`` wait, finish the
    oldest. Returns seconds in total, putting (submit) and waiting (result)."""
    pending: deque = deque()
    put = waited = 0.0
    started = time.perf_counter()
    for images in batches:
        if len(pending) >= in_flight:
            mark = time.perf_counter()
            pending.popleft().result()
            waited += time.perf_counter() - mark
        mark = time.perf_counter()
        pending.append(ensemble.submit(images))
        put += time.perf_counter() - mark
    mark = time.perf_counter()
    while pending:
        pending.popleft().result()
    waited += time.perf_counter() - mark
    return {"seconds": time.perf_counter() - started, "put": put, "waited": waited}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--actors", type=int, default=2)
    args = parser.parse_args(argv)

    from gicls.config import (
        DEFAULT_CLASSES,
        ClusterConfig,
        GiclsConfig,
        InferenceConfig,
        PathsConfig,
    )
    from gicls.daemon.ray_pool import ActorPool

    with tempfile.TemporaryDirectory(prefix="gicls-bench-ray-") as work:
        folder = Path(work)
        models_dir = fixtures.write_bundle(folder / "Models")
        batches = decoded_batches(folder, args.images, args.batch)
        config = GiclsConfig(
            paths=PathsConfig(models_dir=models_dir),
            inference=InferenceConfig(backend="ray", actors=args.actors, cpus_per_actor=1),
            cluster=ClusterConfig(address="local"),
        )
        # Ray first: idle actors use no CPU while the local pass runs.
        pool = ActorPool(config, warm_batch=args.batch)
        try:
            ensemble = pool.load(models_dir, DEFAULT_CLASSES, "float32")
            score_on_pool(ensemble, batches[:2], args.actors + 1)  # every actor warm
            local = score_local(models_dir, batches)
            ray = score_on_pool(ensemble, batches, args.actors + 1)
            one = score_on_pool(ensemble, batches, 1)
            answer = ensemble.submit(batches[0]).result()
        finally:
            pool.close()

    rate = {
        "local": args.images / local,
        "ray": args.images / ray["seconds"],
        "one": args.images / one["seconds"],
    }
    print(
        f"{args.images} images of {fixtures.IMAGE_SIZE} px in batches of {args.batch}, "
        f"ten seed_cnn models, {args.actors} actors x 1 CPU"
    )
    print(f"local in-process   {rate['local']:8.1f} images/s  ({local:.2f} s)")
    print(f"ray actor pool     {rate['ray']:8.1f} images/s  ({ray['seconds']:.2f} s)")
    print(f"ratio ray / local  {rate['ray'] / rate['local']:8.3f}  (goal >= 0.8)")
    print(f"one actor          {rate['one']:8.1f} images/s  (one batch at a time, round trip)")
    print(
        f"bytes per batch    {batches[0].nbytes} sent (uint8 images), "
        f"{len(pickle.dumps(answer))} returned (scores + manifest)"
    )
    print(
        f"ray pass, driver   {ray['put']:.2f} s putting batches, {ray['waited']:.2f} s waiting "
        "for answers"
    )


if __name__ == "__main__":
    main()
