"""
The training input pipeline on tf.data, shared by every model mode.

A mode supplies ``sample_fn(image_id, augmentation)``, which loads one image
and builds its training arrays (or returns None to skip an image without
instances), and the signature of those arrays. This module turns that into
a ``tf.data.Dataset`` of batches keyed by the model's input names:

* every pass over the dataset is a fresh permutation of the image ids
  (no duplicated or dropped samples within a pass, a new order each pass);
* images are loaded by parallel tf.data workers, batches are prefetched;
* images without instances are skipped; an image that fails to load is
  logged (WARNING, with its id, source and path, and the traceback) and
  skipped; when MAX_CONSECUTIVE_ERRORS images fail in a row, loading stops
  with a DataLoadError naming the last of them and its error;
* when every image of the dataset has been skipped since the last usable one
  (none has instances, or all fail), loading stops with a ValueError instead
  of waiting forever for a batch;
* ``no_augmentation_sources`` images are never augmented;
* a script or notebook kernel that exits while holding an iterator over
  such a dataset exits cleanly (see ``_release_iterators_at_exit``).
"""

import atexit
import gc
import logging

import numpy as np
import tensorflow as tf

from mrcnn.data.groundtruth import MAX_CONSECUTIVE_ERRORS, ErrorCounter, _describe_image

logger = logging.getLogger(__name__)


def _release_iterators_at_exit():
    """Free the resources of tf.data iterators still alive at exit.

    The loaders run Python (``tf.numpy_function``) on tf.data threads. An
    iterator left alive until interpreter shutdown is destroyed during
    finalization, when those threads can no longer take the GIL to finish
    their calls, and the destructor, which waits for them, hangs the
    process forever. Registered with ``atexit``, this runs before
    finalization, while the calls can still complete.
    """
    released = 0
    for obj in gc.get_objects():
        # type(), not isinstance(): isinstance reads obj.__class__, which
        # raises for a dead weakref.proxy.
        if not issubclass(type(obj), tf.data.Iterator):
            continue
        try:
            if obj.__dict__.pop("_iterator_resource", None) is not None:
                released += 1
        except Exception:  # keep exiting; say what was left behind
            logger.warning("could not release a tf.data iterator at exit", exc_info=True)
    if released:
        logger.debug("released %d tf.data iterator(s) at exit", released)


atexit.register(_release_iterators_at_exit)


class DataLoadError(RuntimeError):
    """Too many images in a row failed to load; the message names the last
    one (id, source, path) and its error."""


def make_dataset(dataset, sample_fn, signature, batch_size, shuffle=True,
                 augmentation=None, no_augmentation_sources=None, constants=None,
                 seed=None, repeat=True, shard=None):
    """Batched training inputs as a tf.data.Dataset.

    dataset: a prepared utils.Dataset.
    sample_fn: ``sample_fn(image_id, augmentation)`` -> list of NumPy arrays
        in ``signature`` order, or None to skip the image.
    signature: list of ``(input_name, shape, dtype)`` of one sample (no
        batch axis); shapes must be fully defined.
    batch_size: images per batch (the global batch across replicas).
        Incomplete final batches are dropped so every step sees
        ``batch_size`` images. With ``repeat`` a dataset smaller than a
        batch is fine (a batch then spans passes); without, it is an error.
    augmentation: passed to sample_fn except for images whose source is in
        ``no_augmentation_sources``.
    constants: dict input_name -> array added, with a batch axis, to every
        batch (for example the anchors).
    seed: seed of the shuffle (None: different every run).
    repeat: True for an endless dataset (Keras ``steps_per_epoch``);
        False for one pass.
    shard: ``(index, count)``: use only every count-th image from the
        index-th on (one worker's share in multi-worker training, so the
        workers see different images); None: all images.

    Yields dicts ``{input_name: [batch_size, ...] tensor}``. While
    iterating, tf.data reports (with the message below) a DataLoadError
    after MAX_CONSECUTIVE_ERRORS failures in a row and a ValueError when
    no image of a full pass is usable; a sample whose arrays do not match
    ``signature`` raises ValueError naming the image.
    """
    image_ids = np.asarray(dataset.image_ids)
    if image_ids.size == 0:
        raise ValueError("The dataset has no images; did you call dataset.prepare()?")
    if shard is not None:
        index, count = shard
        if image_ids.size < count:
            raise ValueError("The dataset has {} images, fewer than the {} workers that share "
                             "it; each worker needs at least one".format(image_ids.size, count))
        image_ids = image_ids[index::count]
    if image_ids.size < batch_size and not repeat:
        raise ValueError("The dataset has {} images, fewer than one batch of {}".format(
            image_ids.size, batch_size))
    skip_sources = set(no_augmentation_sources or [])
    names = [name for name, _, _ in signature]
    shapes = [tuple(int(s) for s in shape) for _, shape, _ in signature]
    dtypes = [np.dtype(dtype) for _, _, dtype in signature]
    errors = ErrorCounter(MAX_CONSECUTIVE_ERRORS, len(np.unique(image_ids)))

    def load(image_id):
        image_id = int(image_id)
        source = dataset.image_info[image_id].get("source")
        try:
            sample = sample_fn(image_id, None if source in skip_sources else augmentation)
        except Exception as error:
            described = _describe_image(dataset, image_id)
            if errors.failure():
                message = ("{} images in a row failed to load; stopping. The last was {}: "
                           "{}: {}. Fix these images or remove them from the dataset (each "
                           "failure is logged with its traceback)".format(
                               MAX_CONSECUTIVE_ERRORS, described, type(error).__name__,
                               error))
                logger.error(message, exc_info=True)
                raise DataLoadError(message) from error
            logger.warning("Skipping %s after an error: %s: %s", described,
                           type(error).__name__, error, exc_info=True)
            sample = None
        else:
            errors.success()
        if errors.usable(image_id, sample is not None):
            raise ValueError(
                "No usable image in a full pass over the dataset: each of its {} images "
                "had no instances (no class id > 0 from load_mask()) or failed to load. "
                "Check load_mask() and the class ids it returns".format(errors.image_count))
        if sample is None:
            return [np.zeros(s, d) for s, d in zip(shapes, dtypes)] + [np.bool_(False)]
        arrays = []
        for name, shape, dtype, array in zip(names, shapes, dtypes, sample):
            array = np.asarray(array)
            if array.shape != shape:
                raise ValueError("{}: {} has shape {}, expected {}".format(
                    _describe_image(dataset, image_id), name, array.shape, shape))
            arrays.append(array.astype(dtype, copy=False))
        return arrays + [np.bool_(True)]

    def load_tf(image_id):
        outputs = tf.numpy_function(load, [image_id], [tf.as_dtype(d) for d in dtypes] + [tf.bool],
                                    stateful=True)
        for tensor, shape in zip(outputs, shapes):
            tensor.set_shape(shape)
        outputs[-1].set_shape(())
        return tuple(outputs)

    ids = tf.data.Dataset.from_tensor_slices(image_ids.astype(np.int64))
    if shuffle:
        ids = ids.shuffle(len(image_ids), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ids = ids.repeat()
    # Order only matters when asked for (a seed, or no shuffling).
    samples = ids.map(load_tf, num_parallel_calls=tf.data.AUTOTUNE,
                      deterministic=seed is not None or not shuffle)
    samples = samples.filter(lambda *arrays: arrays[-1])
    constants = {k: tf.constant(v) for k, v in (constants or {}).items()}

    def to_dict(*arrays):
        batch = dict(zip(names, arrays[:-1]))
        for name, value in constants.items():
            batch[name] = tf.broadcast_to(value[None], tf.concat(
                [[batch_size], tf.shape(value)], axis=0))
        return batch

    batches = (samples.batch(batch_size, drop_remainder=True)
               .map(to_dict, num_parallel_calls=tf.data.AUTOTUNE)
               .prefetch(PREFETCH_BATCHES))
    return batches.with_options(pipeline_options())


# Batches made ahead of the training step.
PREFETCH_BATCHES = 2


def pipeline_options():
    """tf.data options of every input pipeline: autotuning off.

    With autotuning on, each iterator starts a thread that re-optimises the
    pipeline at growing intervals, and destroying the iterator waits for
    that thread's current sleep to end. Keras builds a new validation
    iterator every epoch and destroys the old one; on a 2-core machine
    training the shapes sample that wait idled the whole process for 15-17
    s in every other epoch (a 20 s epoch took 41 s). Without autotuning the
    ``AUTOTUNE`` map parallelism is the number of cores (at most 16) and the prefetch
    buffer is PREFETCH_BATCHES; the loaders are Python, so more threads
    would only contend for the GIL.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return options
