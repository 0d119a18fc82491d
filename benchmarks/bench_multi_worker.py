"""Multi-worker benchmark: the loss curve of two worker processes on this
machine (MultiWorkerMirroredStrategy over localhost, TF_CONFIG) against one
process at the same global batch, from the same initial weights, on the
shapes sample's data and ShapesConfig.

Usage (from the repository root):

    python benchmarks/bench_multi_worker.py                 # 8 epochs of 25 steps, batch 8
    python benchmarks/bench_multi_worker.py --epochs 2 --steps 5   # smoke test

The single process trains IMAGES_PER_GPU = batch; each worker trains
IMAGES_PER_GPU = batch / 2 on its half of the images, so both take steps on
global batches of the same size. Data order differs (each worker reads its
own shard), so the curves agree within the noise of the batches drawn, not
exactly (the exact equality of one step is a unit test:
tests/test_multi_worker.py). Prints one JSON object: per-epoch training and
validation losses of both runs, their relative gaps, the same gaps between
two single-process runs (the noise), wall times and the machine.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_training(args):
    """One training process (a worker when TF_CONFIG is set); prints JSON."""
    import keras
    from mrcnn import model as modellib
    from mrcnn import training
    from samples_loader import load_sample

    shapes = load_sample('samples/shapes/shapes.py', 'shapes_sample')
    config = shapes.ShapesConfig()
    config.IMAGES_PER_GPU = args.per_worker_batch
    config.STEPS_PER_EPOCH = args.steps
    config.VALIDATION_STEPS = args.val_steps
    config.validate()
    training.start_multi_worker(config)      # before TensorFlow runs anything
    keras.utils.set_random_seed(args.seed)   # the same initial weights in every run
    model = modellib.create_model("training", config, args.logs)
    dataset_train, dataset_val = shapes.make_datasets(args.train_images, args.val_images)
    start = time.time()
    history = model.train(dataset_train, dataset_val, learning_rate=config.LEARNING_RATE,
                          epochs=args.epochs, layers="all", verbose=0)
    print(json.dumps({"loss": [float(v) for v in history.history["loss"]],
                      "val_loss": [float(v) for v in history.history["val_loss"]],
                      "seconds": round(time.time() - start, 1),
                      "replicas": model.strategy.num_replicas_in_sync,
                      "chief": training.is_chief(model.strategy)}))


def launch(args, per_worker_batch, workers):
    from mrcnn import training
    configs = training.local_tf_configs(workers)
    procs = []
    for index in range(workers):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, ROOT]))
        env.pop("TF_CONFIG", None)
        if workers > 1:
            env["TF_CONFIG"] = configs[index]
        command = [sys.executable, os.path.abspath(__file__), "--role", "train",
                   "--per-worker-batch", str(per_worker_batch),
                   "--logs", tempfile.mkdtemp(prefix="bench_multi_worker_")]
        for name in ("epochs", "steps", "val_steps", "train_images", "val_images", "seed"):
            command += ["--" + name.replace("_", "-"), str(getattr(args, name))]
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    reports = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode:
            raise SystemExit("a training process failed:\n" + err[-4000:])
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=25, help="steps per epoch")
    parser.add_argument("--val-steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8, help="global batch (even)")
    parser.add_argument("--train-images", type=int, default=500)
    parser.add_argument("--val-images", type=int, default=50)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--role", default="compare", choices=["compare", "train"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--per-worker-batch", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--logs", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "train":
        return run_training(args)
    if args.batch % 2:
        parser.error("--batch must be even (two workers share it)")
    from machine import machine_info
    single = launch(args, args.batch, 1)
    two = launch(args, args.batch // 2, 2)
    # The noise: the same single-process run again (another data order).
    again = launch(args, args.batch, 1)

    def gaps(a, b, key):
        return [round(abs(x - y) / max(abs(x), 1e-12), 4) for x, y in zip(a[key], b[key])]

    def second_half_mean(values):
        values = values[args.epochs // 2:]
        return round(sum(values) / max(1, len(values)), 4)
    print(json.dumps({
        "global_batch": args.batch, "epochs": args.epochs, "steps_per_epoch": args.steps,
        "one_process": single, "two_workers": two, "one_process_again": again,
        "loss_relative_gap": gaps(single, two, "loss"),
        "val_loss_relative_gap": gaps(single, two, "val_loss"),
        "noise_loss_relative_gap": gaps(single, again, "loss"),
        "noise_val_loss_relative_gap": gaps(single, again, "val_loss"),
        "loss_gap_second_half_mean": second_half_mean(gaps(single, two, "loss")),
        "noise_gap_second_half_mean": second_half_mean(gaps(single, again, "loss")),
        "machine": machine_info()}, indent=2))


if __name__ == "__main__":
    main()
