"""The benchmark suite: every training step of the project against references.

    python bench/run.py                      # all steps, CPU and paper sizes
    python bench/run.py --sizes cpu --steps classifier,dcgan --seconds 5
    python bench/run.py --jit                # also our steps compiled with XLA

For each training step (the classification CNN, DCGAN, ACGAN, disentanglement
step 1 and step 2) at the CPU configs' size and at the paper configs' size it
measures images/s and the median step time after warm-up of

* **ours**: the project's model or trainer, compiled as the project compiles
  it, trained with ``fit`` on in-memory batches gathered by
  ``keras_lesions.pipeline.epoch_batches`` (the GANs' stream; the
  classifier's ``step_batches`` gathers the same way, and disentanglement
  steps 1–2 read the online augmentation, timed on its own below);
* **eager**: the same step called eagerly from Python, no ``tf.function``;
* **keras-io**: for the GANs, the keras-io examples' trainer shape (one D pass
  over real and generated images concatenated, and a G step on a fresh z that
  runs the generator again; ``bench/references.py``);
* **plain fit**: for the classifiers, ``model.fit`` on in-memory numpy arrays;

all in one process, on the same networks, batch size and data, and the
process's peak host memory (and, on a GPU, the device's) after ours. Each
step's FLOPs per image are counted from its layers (``bench/flops.py``) and
turned into GFLOP/s beside the machine's practical peak: a 2048² float32
matrix product timed in the same run, and again at the end of every round of
each step, so that a step's share of the peak is taken within a round (the
machine's speed drifts: by a quarter between two suites on one day). The
augmentation part times the offline groups' batched path, the online tf.data
pipeline and a per-image OpenCV loop (``bench/bench_augment.py``) and sets
them against what the classifiers consume.

Ours and the references are measured in ``--repeats`` interleaved rounds;
each ratio is taken within a round, and its median and range kept. From the
measured rates it projects every bundled config's whole plan (trainings,
CPU seconds per epoch of each kind, runs per hour: ``bench/projection.py``).

Each measurement runs in its own process (so that its peak memory is its own)
and the suite writes one JSON (``--out``) and prints a table. A benchmark, not
a test: nothing is asserted. The sizes come from the bundled configs named in
``SIZES``, so the benchmark follows them when they change.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
REPO = HERE.parent

STEPS = ("classifier", "dcgan", "acgan", "step1", "step2")
# Which config gives each step its size ("cpu": what the CPU configs train;
# "paper": the papers' networks).
SIZES = {
    "cpu": {"frid-adar": "frid-adar-2018-gan-cpu.yaml", "ben-cohen": "ben-cohen-2019-cpu.yaml"},
    "paper": {"frid-adar": "frid-adar-2018.yaml", "ben-cohen": "ben-cohen-2019.yaml"},
}
BATCHES_PER_EPOCH = 8     # rows held in memory: 8 batches, reshuffled every epoch
WARMUP_STEPS = 3          # tracing and first-call allocation are not throughput


# --------------------------------------------------------------------------- measuring


def _step_timer():
    """A callback recording (time, steps done) at the end of every execution:
    one batch, or ``steps_per_execution`` batches, whose end Keras reports
    as one."""
    import keras

    class StepTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends, self.epoch = [], 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            done = self.epoch * self.params["steps"] + batch + 1
            self.ends.append((time.perf_counter(), done))
    return StepTimes()


def _summary(ends: list[tuple[float, int]], batch: int) -> dict:
    """images/s and median step time from (time, steps done) at consecutive
    ends (the first end is the origin: its step's start is not seen)."""
    (t0, s0), (t1, s1) = ends[0], ends[-1]
    per_step = [(tb - ta) / (sb - sa) for (ta, sa), (tb, sb) in zip(ends, ends[1:])]
    return {"steps": s1 - s0, "images_per_s": batch * (s1 - s0) / (t1 - t0),
            "median_step_ms": 1000 * statistics.median(per_step)}


def _steps_for(seconds_per_step: float, args) -> int:
    return int(min(args.max_steps, max(args.min_steps, math.ceil(args.seconds / seconds_per_step))))


def measure_fit(model, fit_data, batch: int, args) -> dict:
    """Warm up, estimate the step time, then time about ``args.seconds`` of
    ``fit``. ``fit_data(epochs)`` gives fit's data arguments for that many
    epochs of ``BATCHES_PER_EPOCH`` steps."""
    per_execution = args.steps_per_execution
    warmup_steps = per_execution * math.ceil(WARMUP_STEPS / per_execution)
    warmup = {**fit_data(1), "steps_per_epoch": warmup_steps, "epochs": 1, "verbose": 0}
    model.fit(**warmup)
    start = time.perf_counter()
    model.fit(**warmup)
    steps = _steps_for((time.perf_counter() - start) / warmup_steps, args)
    epochs = max(1, math.ceil((steps + 1) / BATCHES_PER_EPOCH))
    timer = _step_timer()
    model.fit(**fit_data(epochs), epochs=epochs, callbacks=[timer], verbose=0)
    return _summary(timer.ends, batch)


def measure_eager(step, batches, batch: int, args) -> dict:
    from references import eager_step_times

    start = time.perf_counter()
    for _ in range(WARMUP_STEPS):
        step(next(batches))
    steps = _steps_for((time.perf_counter() - start) / WARMUP_STEPS, args)
    times = eager_step_times(step, batches, steps + 1)
    ends, total = [(0.0, 0)], 0.0
    for i, t in enumerate(times, start=1):
        total += t
        ends.append((total, i))
    return _summary(ends, batch)


def peak_memory() -> dict:
    """This process's peak resident memory, and the GPU's peak if there is one."""
    import resource

    import tensorflow as tf

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    found = {"host_peak_mib": peak / (2 ** 20 if sys.platform == "darwin" else 1024)}
    if tf.config.list_physical_devices("GPU"):
        found["device_peak_mib"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2 ** 20
    else:
        found["device_peak_mib"] = None
    return found


# --------------------------------------------------------------------------- the steps


def _config(step: str, size: str):
    from keras_lesions.config import load_config, resolve_config_path

    family = "ben-cohen" if step.startswith("step") else "frid-adar"
    return load_config(resolve_config_path(REPO / "configs" / SIZES[size][family]))


def _stream(arrays, batch, epochs, drop_remainder=True):
    """The project's batch stream over in-memory arrays, seed 0."""
    from keras_lesions.pipeline import epoch_batches

    return epoch_batches(arrays, batch, 0, 0, epochs, drop_remainder=drop_remainder)[0]


def bench_step(step: str, size: str, args) -> dict:
    """Ours and the references of one step at one size, in this process."""
    import keras
    import numpy as np

    from flops import forward_flops
    from references import ConcatenatedACGAN, ConcatenatedDCGAN, classifier_tape_step

    config = _config(step, size)
    rng = np.random.default_rng(0)
    # XLA off is what the project compiles with (compute.xla, default off on
    # any device); --jit adds ours with XLA on, measured in this same process.
    switches = {"jit_compile": False, "steps_per_execution": args.steps_per_execution}
    result = {"step": step, "size": size, "config": config.name}
    references = {}
    reference_flops = {}  # a reference doing other work than ours: its FLOPs per image

    if step == "classifier":
        from keras_lesions.models import build_lesion_classifier

        c, batch = config.classifier, config.train.batch_size
        n = batch * BATCHES_PER_EPOCH
        x = rng.random((n, c.input_size, c.input_size, 1), dtype=np.float32)
        y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
        arrays = (x, y)

        def fresh(switches):  # compiled as keras_lesions.train.classifier compiles it (§4.1)
            keras.utils.set_random_seed(0)
            model = build_lesion_classifier(3, c.input_size, tuple(c.filters), c.kernel_size,
                                            c.dense_units, c.dropout)
            model.compile(optimizer=keras.optimizers.SGD(config.train.learning_rate,
                                                         momentum=config.train.momentum,
                                                         nesterov=True),
                          loss=keras.losses.CategoricalCrossentropy(),
                          metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
                          **switches)
            return model

        flops = lambda model: 3 * forward_flops(model)  # noqa: E731
        drop_remainder = False
        references["plain_fit"] = lambda: measure_fit(
            fresh(switches), lambda e: {"x": x, "y": y, "batch_size": batch, "shuffle": True},
            batch, args)
        references["eager"] = lambda: measure_eager(
            classifier_tape_step(fresh(switches)), iter(_stream(arrays, batch, 10 ** 4, False)),
            batch, args)

    elif step in ("dcgan", "acgan"):
        from keras_lesions.train.gan import build_gan_trainer

        gan, batch = config.gan, config.gan.batch_size
        n = batch * BATCHES_PER_EPOCH
        images = rng.uniform(-1, 1, (n, 64, 64, 1)).astype(np.float32)
        classes = rng.integers(0, 3, n).astype(np.int32)
        arrays = (images,) if step == "dcgan" else (images, classes)

        def fresh(switches):
            keras.utils.set_random_seed(0)
            trainer = build_gan_trainer(step, 3, config)
            # build_gan_trainer compiles with the §3.2 Adam; again with the switches
            trainer.compile(d_optimizer=trainer.d_optimizer, g_optimizer=trainer.g_optimizer,
                            **switches)
            return trainer

        def flops(trainer):
            f_g, f_d = forward_flops(trainer.generator), forward_flops(trainer.discriminator)
            # G forward once and backward (3 f_g); D step: D forward + backward
            # on the real and the fake batch (6 f_d); G step: D forward + input
            # gradients on the fake batch (2 f_d).
            return 3 * f_g + 8 * f_d

        # keras-io's step runs G forward again for its G step
        reference_flops["keras_io"] = lambda trainer: flops(trainer) + forward_flops(
            trainer.generator)

        def keras_io():
            nets = fresh(switches)
            if step == "dcgan":
                trainer = ConcatenatedDCGAN(nets.generator, nets.discriminator, gan.latent_dim,
                                            gan.diff_augment, gan.seed)
            else:
                trainer = ConcatenatedACGAN(nets.generator, nets.discriminator, 3, gan.latent_dim,
                                            gan.diff_augment, gan.seed)
            trainer.compile(nets.d_optimizer, nets.g_optimizer, **switches)
            return measure_fit(trainer, fit_data, batch, args)

        drop_remainder = True
        references["keras_io"] = keras_io
        references["eager"] = lambda: measure_eager(
            fresh(switches).train_step, iter(_stream(arrays, batch, 10 ** 4)), batch, args)

    else:
        from keras_lesions.models.disentangle import build_specified_classifier
        from keras_lesions.train.disentangle import DisentangleTrainer, build_networks

        d, batch = config.disentangle, config.disentangle.batch_size
        n = batch * BATCHES_PER_EPOCH
        images = rng.random((n, d.input_size, d.input_size, 1), dtype=np.float32)
        targets = np.eye(4, dtype=np.float32)[rng.integers(0, 4, n)]
        arrays = (images, targets)
        drop_remainder = True

        if step == "step1":
            def fresh(switches):  # as keras_lesions.train.specified_classifier compiles it
                keras.utils.set_random_seed(0)
                nets = build_networks(4, config)
                model = build_specified_classifier(nets["encoder_c"], nets["classifier"])
                model.compile(optimizer=keras.optimizers.Adam(d.classifier_learning_rate),
                              loss=keras.losses.CategoricalCrossentropy(),
                              metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
                              **switches)
                return model

            flops = lambda model: 3 * forward_flops(model)  # noqa: E731
            references["plain_fit"] = lambda: measure_fit(
                fresh(switches), lambda e: {"x": images, "y": targets, "batch_size": batch,
                                            "shuffle": True}, batch, args)
            references["eager"] = lambda: measure_eager(
                classifier_tape_step(fresh(switches)), iter(_stream(arrays, batch, 10 ** 4)),
                batch, args)
        else:
            def fresh(switches):  # as keras_lesions.train.disentangle builds step 2
                keras.utils.set_random_seed(0)
                nets = build_networks(4, config)
                trainer = DisentangleTrainer(nets["encoder_c"], nets["encoder_r"],
                                             nets["decoder"], nets["adversary"],
                                             rec_weight=d.rec_weight, adv_weight=d.adv_weight,
                                             adversary_steps=d.adversary_steps)
                trainer.compile(ae_optimizer=keras.optimizers.Adam(d.learning_rate),
                                adversary_optimizer=keras.optimizers.Adam(d.learning_rate),
                                **switches)
                return trainer

            def flops(trainer):
                f_e, f_dec = forward_flops(trainer.encoder_r), forward_flops(trainer.decoder)
                f_a = forward_flops(trainer.adversary)
                # E_C and E_R forward; the adversary's own steps; then E_R and
                # G_R forward + backward, and the adversary forward + input
                # gradients.
                return (2 * f_e + 3 * d.adversary_steps * f_a
                        + 3 * f_e + 3 * f_dec + 2 * f_a)

            references["eager"] = lambda: measure_eager(
                fresh(switches).train_step, iter(_stream(arrays, batch, 10 ** 4)), batch,
                args)

    fit_data = lambda e: {"x": _stream(arrays, batch, e, drop_remainder),  # noqa: E731
                          "steps_per_epoch": BATCHES_PER_EPOCH}
    model = fresh(switches)
    result["batch"] = batch
    result["flops_per_image"] = flops(model)
    # every network's weights (a trainer wrapping its networks is never built itself)
    result["parameters"] = int(sum(np.prod(w.shape) for w in model.weights))
    measures = {"ours": lambda: measure_fit(model, fit_data, batch, args)}
    if args.jit:
        # built at its first measurement, after ours' peak memory is taken
        xla_model = functools.cache(lambda: fresh({**switches, "jit_compile": True}))
        measures["ours_xla"] = lambda: measure_fit(xla_model(), fit_data, batch, args)
    measures.update(references)
    # Rounds interleave ours and the references, so a drift of the machine
    # (another job, clock changes) reaches all of them alike; a ratio is
    # taken within each round, and its median and range across rounds kept.
    rounds: dict[str, list[dict]] = {name: [] for name in measures}
    peaks = []  # the matrix product, once a round: the share of peak within a round
    for round_index in range(args.repeats):
        for name, measure in measures.items():
            rounds[name].append(measure())
            if round_index == 0 and name == "ours":
                # before anything else is built or run: the step's own peak
                result["memory"] = peak_memory()
        peaks.append(bench_matmul(args, seconds=1.0)["gflops_per_s"])
    for name, found in rounds.items():
        result[name] = _median_round(found)
        per_image = result["flops_per_image"]
        if name in reference_flops:
            per_image = result[name]["flops_per_image"] = reference_flops[name](model)
        result[name]["gflops_per_s"] = per_image * result[name]["images_per_s"] / 1e9
    result["repeats"] = args.repeats
    shares = [result["flops_per_image"] * r["images_per_s"] / 1e9 / peak
              for r, peak in zip(rounds["ours"], peaks)]
    result["share_of_peak"] = {"median": statistics.median(shares), "min": min(shares),
                               "max": max(shares), "rounds": shares,
                               "matmul_gflops_per_s": peaks}
    result["ratios"] = {name: _ratio_range(rounds["ours"], rounds[name])
                        for name in references}
    if args.jit:
        result["ratios"]["xla_over_ours"] = _ratio_range(rounds["ours_xla"], rounds["ours"])
    return result


def _median_round(found: list[dict]) -> dict:
    """The round of median images/s, with every round's images/s beside it."""
    ranked = sorted(found, key=lambda r: r["images_per_s"])
    return {**ranked[(len(ranked) - 1) // 2],
            "rounds_images_per_s": [r["images_per_s"] for r in found]}


def _ratio_range(numerators: list[dict], denominators: list[dict]) -> dict:
    """images/s of one over the other, round by round: median, min, max."""
    ratios = [a["images_per_s"] / b["images_per_s"] for a, b in zip(numerators, denominators)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
            "rounds": ratios}


def bench_matmul(args, n: int = 2048, seconds: float = 3.0) -> dict:
    """The practical fp32 peak: a large matrix product, timed after warm-up
    (at least 10 products, then up to ``seconds`` or 200)."""
    import tensorflow as tf

    a = tf.random.uniform((n, n), dtype=tf.float32)
    b = tf.random.uniform((n, n), dtype=tf.float32)
    product = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
    for _ in range(3):
        product(a, b).numpy()
    times = []
    start = time.perf_counter()
    while len(times) < 10 or (time.perf_counter() - start < seconds and len(times) < 200):
        t0 = time.perf_counter()
        product(a, b).numpy()
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"n": n, "median_ms": 1000 * median, "gflops_per_s": 2 * n ** 3 / median / 1e9}


def bench_augmentation(args) -> dict:
    import bench_augment

    found = {}
    for size in (64, 128):
        found[str(size)] = bench_augment.measure(bench_augment.parse_args(
            ["--size", str(size), "--count", str(args.augment_count),
             # the online pipeline is fast: 10× the images, so that its
             # start-up is a small part of the time
             "--online-count", str(10 * args.augment_count)]))
    return found


# --------------------------------------------------------------------------- the suite


def child(task: str, args) -> dict:
    from keras_lesions.runtime import configure_tensorflow, environment, quiet_tensorflow_startup

    quiet_tensorflow_startup()
    configure_tensorflow(args.threads)
    if task == "matmul":
        found = {**bench_matmul(args), "device": _device()}
    elif task == "augment":
        found = bench_augmentation(args)
    else:
        step, size = task.split(":")
        found = bench_step(step, size, args)
    found["environment"] = environment()
    return found


def _device() -> dict:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    details = [tf.config.experimental.get_device_details(g) for g in gpus]
    return {"gpus": [d.get("device_name", "GPU") for d in details],
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}


def run_child(task: str, args) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", task,
               "--seconds", str(args.seconds), "--min-steps", str(args.min_steps),
               "--max-steps", str(args.max_steps), "--augment-count", str(args.augment_count),
               "--steps-per-execution", str(args.steps_per_execution),
               "--repeats", str(args.repeats)]
    if args.jit:
        command.append("--jit")
    if args.threads:
        command += ["--threads", str(args.threads)]
    try:
        # the child runs this script, so bench/ is its sys.path[0]
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {args.timeout:.0f} s (--timeout)"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {last}"}
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": "the measurement printed no result"}


def _ratio(a, b) -> str:
    return f"{a / b:5.2f}×" if a and b else "    –"


def _row_ratio(row: dict, name: str) -> str:
    """Ours over reference ``name``: the median of the rounds' ratios (a row
    written before rounds existed: the ratio of its one measurement)."""
    found = row.get("ratios", {}).get(name)
    if found:
        return f"{found['median']:5.2f}×"
    if name == "xla_over_ours":
        return _ratio(row.get("ours_xla", {}).get("images_per_s"), row["ours"]["images_per_s"])
    return _ratio(row["ours"]["images_per_s"], row.get(name, {}).get("images_per_s"))


def print_table(results: dict) -> None:
    peak = results.get("matmul", {}).get("gflops_per_s")
    if peak:
        print(f"practical fp32 peak: {peak:.1f} GFLOP/s (2048² matmul)")
    print(f"{'step':10s} {'size':5s} {'batch':>5s} {'GFLOP/img':>9s} {'images/s':>9s} "
          f"{'ms/step':>8s} {'GFLOP/s':>8s} {'% peak':>6s} {'host MiB':>8s}  "
          f"{'/eager':>6s} {'/keras-io':>9s} {'/plain fit':>10s} {'XLA/ours':>8s}")
    for row in results["steps"]:
        if "error" in row:
            print(f"{row['step']:10s} {row['size']:5s} failed: {row['error']}")
            continue
        ours = row["ours"]
        within = row.get("share_of_peak")  # against each round's own matrix product
        share = (f"{100 * within['median']:5.0f}%" if within else
                 f"{100 * ours['gflops_per_s'] / peak:5.0f}%" if peak else "     –")
        print(f"{row['step']:10s} {row['size']:5s} {row['batch']:5d} "
              f"{row['flops_per_image'] / 1e9:9.3f} {ours['images_per_s']:9.1f} "
              f"{ours['median_step_ms']:8.1f} {ours['gflops_per_s']:8.1f} {share:>6s} "
              f"{row['memory']['host_peak_mib']:8.0f}  "
              f"{_row_ratio(row, 'eager'):>6s} {_row_ratio(row, 'keras_io'):>9s} "
              f"{_row_ratio(row, 'plain_fit'):>10s} {_row_ratio(row, 'xla_over_ours'):>8s}")
    ranges = [f"  {row['step']} {row['size']} {name}: {r['min']:.2f}–{r['max']:.2f}×"
              for row in results["steps"] if "error" not in row
              for name, r in row.get("ratios", {}).items() if len(r["rounds"]) > 1]
    for row in results["steps"]:
        share = row.get("share_of_peak")
        if share and len(share["rounds"]) > 1:
            ranges.append(f"  {row['step']} {row['size']} % of peak: "
                          f"{100 * share['min']:.0f}–{100 * share['max']:.0f}%")
    if ranges:
        print("ranges over the rounds:")
        print("\n".join(ranges))
    augment = results.get("augment")
    if augment and "error" not in augment:
        print("augmentation, images/s:")
        for size, found in augment.items():
            if size == "environment":
                continue
            print(f"  {size}×{size}: " + ", ".join(f"{k} {v:.0f}" for k, v in found.items()
                                                   if k.endswith("_per_s")))
        for line in results.get("consumption", []):
            print("  " + line)


def consumption(results: dict) -> list[str]:
    """Augmentation rates against what the classifiers consume."""
    lines = []
    augment = results.get("augment", {})
    by = {(r["step"], r["size"]): r for r in results["steps"] if "error" not in r}
    pairs = [("64", "batched_per_s", "classifier", "offline groups (batched) / classifier"),
             ("128", "online_per_s", "step1", "online tf.data / disentanglement step 1")]
    for size, key, step, label in pairs:
        for which in ("cpu", "paper"):
            if key in augment.get(size, {}) and (step, which) in by:
                made = augment[size][key]
                used = by[(step, which)]["ours"]["images_per_s"]
                lines.append(f"{label} at {which} size: {made:.0f} / {used:.0f} = "
                             f"{made / used:.1f}×")
    return lines


# The GPU that bench/projection.py assumes by default (an A100's float32 without
# tensor cores, at a utilisation that needs several runs packed on it).
GPU_TFLOPS, GPU_UTILIZATION = 19.5, 0.3


def whole_plans(results: dict) -> list[dict]:
    """Each bundled config's plan projected from this run's rates (its
    trainings, seconds per epoch of each kind, runs per hour); only the
    configs whose bench size was measured."""
    from projection import project

    measured = {r["size"] for r in results["steps"] if "ours" in r}
    return [row for row in project(results, GPU_TFLOPS, GPU_UTILIZATION)
            if row["bench_size"] in measured]


def _write(path, results: dict) -> None:
    """Write the JSON whole or not at all (a temporary, then a rename)."""
    temporary = Path(f"{path}.tmp")
    temporary.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(temporary, path)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default=",".join(STEPS), help="comma-separated, of " +
                        ", ".join(STEPS))
    parser.add_argument("--sizes", default="cpu,paper", help="comma-separated: cpu, paper")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="timed seconds per measurement (after warm-up)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds of ours and the references, interleaved; the table "
                             "gives the median ratio, the JSON every round")
    parser.add_argument("--min-steps", type=int, default=5)
    parser.add_argument("--max-steps", type=int, default=400)
    parser.add_argument("--augment-count", type=int, default=2000)
    parser.add_argument("--no-augment", action="store_true", help="skip the augmentation part")
    parser.add_argument("--jit", action="store_true",
                        help="also time our steps compiled with XLA, in the same process")
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None,
                        help="TensorFlow intra-op threads (default: all cores)")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="seconds before a measurement is given up")
    parser.add_argument("--out", default=str(HERE / "results.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    steps = [s for s in args.steps.split(",") if s]
    sizes = [s for s in args.sizes.split(",") if s]
    unknown = sorted(set(steps) - set(STEPS)) + sorted(set(sizes) - set(SIZES))
    if unknown:
        sys.exit(f"bench/run.py: unknown step or size: {', '.join(unknown)}")
    if (args.steps_per_execution < 1 or args.repeats < 1 or args.seconds <= 0
            or not 1 <= args.min_steps <= args.max_steps):
        sys.exit("bench/run.py: --steps-per-execution, --repeats and --min-steps must be ≥ 1, "
                 "--min-steps ≤ --max-steps, and --seconds > 0")
    folder = Path(args.out).resolve().parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        sys.exit(f"bench/run.py: {args.out}: its folder {folder} does not exist or is not writable")
    started = time.time()
    results = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "switches": {"jit_compile": False, "xla_also": args.jit,
                            "steps_per_execution": args.steps_per_execution,
                            "dtype_policy": "float32", "threads": args.threads,
                            "repeats": args.repeats},
               "matmul": run_child("matmul", args), "steps": []}
    for step in steps:
        for size in sizes:
            print(f"… {step} at {size} size", file=sys.stderr, flush=True)
            row = {"step": step, "size": size, **run_child(f"{step}:{size}", args)}
            results["steps"].append(row)
            _write(args.out, results)  # what is measured is kept if a later one fails
    if not args.no_augment:
        print("… augmentation", file=sys.stderr, flush=True)
        results["augment"] = run_child("augment", args)
    results["consumption"] = consumption(results)
    results["projection"] = whole_plans(results)
    results["seconds"] = time.time() - started
    _write(args.out, results)
    print_table(results)
    if results["projection"]:
        print(f"whole plans, training steps only, from these rates (GPU: "
              f"{GPU_TFLOPS:g} TFLOP/s × {GPU_UTILIZATION:.0%}, assumed):")
        from projection import print_projection

        print_projection(results["projection"])
    print(f"written: {args.out} ({results['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
