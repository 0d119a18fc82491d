"""Training callbacks: the mAP callback and its helpers, the time budget
with learning-rate decay, and the learning-rate schedule on resume."""
import types

import numpy as np
import pytest

from mrcnn import callbacks as cblib
from mrcnn import model as modellib
from mrcnn import training, utils
from mrcnn.data import load_image_gt
from tiny_models import TinyConfig, TinyInferenceConfig, shapes_dataset


# ---------------------------------------------------------------------------
# Learning-rate scale and the time budget
# ---------------------------------------------------------------------------

class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _fake_fit_model(config):
    return types.SimpleNamespace(optimizer=training.build_optimizer(config, 0.02),
                                 stop_training=False)


def test_time_budget_decays_learning_rate_at_fractions(monkeypatch):
    import time
    clock = _Clock()
    monkeypatch.setattr(time, "time", clock)
    config = TinyConfig()
    config.LEARNING_RATE_WARMUP_STEPS = 0
    model = _fake_fit_model(config)
    budget = training.TimeBudget(100, decay_at=(0.5, 0.9), decay_factor=0.1)
    budget.set_model(model)
    budget.on_train_begin()
    seen = []
    for t in (10, 49, 50, 89, 90, 99, 100):
        clock.now = 1000.0 + t
        budget.on_train_batch_end(0)
        seen.append((round(training.current_learning_rate(model.optimizer), 8),
                     model.stop_training))
    assert seen == [(0.02, False), (0.02, False), (0.002, False), (0.002, False),
                    (0.0002, False), (0.0002, False), (0.0002, True)]


def test_time_budget_reserves_the_epoch_end_and_counts_from_start(monkeypatch):
    import time
    clock = _Clock()
    monkeypatch.setattr(time, "time", clock)
    config = TinyConfig()
    model = _fake_fit_model(config)
    # The caller's clock started 20 s before fit(): the budget of 100 s is
    # spent at fit time 80.
    budget = training.TimeBudget(100, start=980.0)
    budget.set_model(model)
    clock.now = 1000.0
    budget.on_train_begin()
    budget.on_epoch_begin(0)
    for t in (5, 30):                   # epoch 0: batches end at 1005, 1030
        clock.now = 1000.0 + t
        budget.on_train_batch_end(0)
    clock.now = 1042.0                  # validation and checkpoint took 12 s
    budget.on_epoch_begin(1)
    assert budget.epoch_end_seconds == 12.0 and not model.stop_training
    clock.now = 1067.0                  # 87 s spent + 12 s reserve < 100
    budget.on_train_batch_end(0)
    assert not model.stop_training
    clock.now = 1068.0                  # 88 + 12 >= 100: stop so the epoch end fits
    budget.on_train_batch_end(1)
    assert model.stop_training


def test_time_budget_rejects_bad_fractions():
    with pytest.raises(ValueError, match="between 0 and 1"):
        training.TimeBudget(10, decay_at=(1.5,))
    with pytest.raises(ValueError, match="positive number of seconds, got 0"):
        training.TimeBudget(0)
    with pytest.raises(ValueError, match="start must be a time.time\\(\\) value"):
        training.TimeBudget(10, start="now")


def test_learning_rate_scale_keeps_warmup():
    config = TinyConfig()
    config.LEARNING_RATE_WARMUP_STEPS = 10
    optimizer = training.build_optimizer(config, 0.1)
    optimizer.iterations.assign(4)       # step 5 of 10 of the warm-up
    assert training.current_learning_rate(optimizer) == pytest.approx(0.05)
    training.set_learning_rate_scale(optimizer, 0.5)
    assert training.current_learning_rate(optimizer) == pytest.approx(0.025)
    import keras
    with pytest.raises(TypeError, match="build_optimizer"):
        training.set_learning_rate_scale(keras.optimizers.SGD(0.1), 0.5)


# ---------------------------------------------------------------------------
# mean_average_precision and copy_weights
# ---------------------------------------------------------------------------

class _OracleModel:
    """A stand-in inference model that returns each image's ground truth
    (found by matching pixels), minus the instances listed in ``drop``."""

    def __init__(self, dataset, config, drop=()):
        self.config = config
        self.truth = [load_image_gt(dataset, config, i) for i in dataset.image_ids]
        self.drop = set(drop)
        self.calls = []

    def detect(self, images):
        self.calls.append(len(images))
        results = []
        for image in images:
            k = next(i for i, t in enumerate(self.truth) if np.array_equal(t[0], image))
            _, _, class_ids, boxes, masks = self.truth[k]
            keep = [j for j in range(len(class_ids)) if (k, j) not in self.drop]
            results.append({"rois": boxes[keep], "class_ids": class_ids[keep],
                            "scores": np.linspace(0.99, 0.9, len(keep)).astype(np.float32),
                            "masks": masks[:, :, keep]})
        return results


def test_mean_average_precision_of_perfect_and_partial_detections():
    dataset = shapes_dataset(3, seed=5)
    config = TinyInferenceConfig()
    config.IMAGES_PER_GPU = 2
    perfect = _OracleModel(dataset, config)
    scores = cblib.mean_average_precision(perfect, dataset, iou_range=True)
    assert scores == {"mAP": 1.0, "mAP@[.5:.95]": 1.0, "images": 3}
    assert perfect.calls == [2, 1]          # BATCH_SIZE images per detect() call
    # Drop one instance of image 0: its precision stays 1 while recall stops
    # at (n-1)/n, so its AP is (n-1)/n (precision 1 up to that recall).
    n0 = len(perfect.truth[0][2])
    partial = _OracleModel(dataset, config, drop=[(0, 0)])
    expected = ((n0 - 1) / n0 + 1.0 + 1.0) / 3
    assert cblib.mean_average_precision(partial, dataset)["mAP"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="at least one image"):
        cblib.mean_average_precision(perfect, dataset, image_ids=[])


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("cb"))
    return (modellib.MaskRCNN("training", TinyConfig(), model_dir),
            modellib.MaskRCNN("inference", TinyInferenceConfig(), model_dir), model_dir)


def test_copy_weights_matches_by_name_and_refuses_other_configs(tiny_models, tmp_path):
    trainer, infer, _ = tiny_models
    count = cblib.copy_weights(trainer.keras_model, infer.keras_model)
    assert count > 10
    for name in ("rpn_conv_shared", "mrcnn_class_logits", "mrcnn_mask", "tiny_bn3"):
        for a, b in zip(trainer.keras_model.get_layer(name).get_weights(),
                        infer.keras_model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)

    class FiveClasses(TinyInferenceConfig):
        NUM_CLASSES = 5
    other = modellib.MaskRCNN("inference", FiveClasses(), str(tmp_path))
    before = [w.numpy().copy() for w in other.keras_model.weights]
    with pytest.raises(ValueError, match="mrcnn_class_logits") as err:
        cblib.copy_weights(trainer.keras_model, other.keras_model)
    assert "Build the inference model from the training model's config" in str(err.value)
    for w, b in zip(other.keras_model.weights, before):       # nothing copied
        np.testing.assert_array_equal(w.numpy(), b)


def test_map_callback_reports_val_map_equal_to_a_fresh_evaluation(tiny_models):
    trainer, infer, model_dir = tiny_models
    train_set, val_set = shapes_dataset(8, seed=1), shapes_dataset(3, seed=2)
    callback = cblib.MeanAveragePrecisionCallback(infer, val_set, every_n_epochs=2,
                                                  verbose=0)
    history = trainer.train(train_set, val_set, 0.01, epochs=2, layers="all",
                            custom_callbacks=[callback], verbose=0)
    # Evaluated after epoch 2 only; the value is in the History.
    assert history.history["val_mAP"] == [callback.history[0][1]]
    assert [e for e, _ in callback.history] == [2]
    # An independent evaluation of the epoch-2 checkpoint gives the same mAP.
    fresh = modellib.MaskRCNN("inference", TinyInferenceConfig(), model_dir)
    fresh.load_weights(trainer.find_last(), by_name=True)
    aps = []
    for image_id in val_set.image_ids:
        image, _, class_ids, boxes, masks = load_image_gt(val_set, fresh.config, image_id)
        r = fresh.detect([image])[0]
        aps.append(utils.compute_ap(boxes, class_ids, masks, r["rois"], r["class_ids"],
                                    r["scores"], r["masks"])[0])
    assert callback.history[0][1] == pytest.approx(float(np.mean(aps)), abs=1e-6)
    # The schedule's step counts every step of both epochs.
    assert int(trainer.keras_model.optimizer.iterations.numpy()) == 2 * TinyConfig.STEPS_PER_EPOCH


def test_map_callback_argument_errors(tiny_models):
    trainer, infer, _ = tiny_models
    with pytest.raises(ValueError, match="inference-mode"):
        cblib.MeanAveragePrecisionCallback(trainer, shapes_dataset(2, seed=1))
    with pytest.raises(ValueError, match="every_n_epochs"):
        cblib.MeanAveragePrecisionCallback(infer, shapes_dataset(2, seed=1), every_n_epochs=0)
