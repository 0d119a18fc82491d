"""
Progress bars for long loops outside ``fit()``: COCO evaluation, detection
over a folder of images, the frames of a video, an export. A Keras
``Progbar`` (the bar ``fit()`` shows) with a count, the rate and a time
estimate, or a silent stand-in when the caller's ``verbose`` is 0.

Usage::

    bar = progress_bar(len(image_ids), "image", verbose)
    for image_id in image_ids:
        ...
        bar.add(1)

Importing this module does not load Keras (the samples import it before
they quiet TensorFlow's start-up logs); the first bar does.
"""


class _Silent(object):
    """The interface of ``keras.utils.Progbar`` that the loops use, doing
    nothing (``verbose=0``)."""

    def add(self, n, values=None):
        pass

    def update(self, current, values=None, finalize=None):
        pass


def progress_bar(total, unit_name="image", verbose=1):
    """A bar for ``total`` items (None when the count is unknown: the bar
    then shows the count and rate without an estimate).

    unit_name: what an item is ("image", "frame"), shown in the rate.
    verbose: 0 for no output, 1 for the bar (redrawn in place on a
        terminal, one line at the end otherwise, as Keras does), 2 for one
        line at the end.
    Returns an object with ``add(n)`` and ``update(current)``.
    """
    if not verbose:
        return _Silent()
    if total is not None:
        total = int(total)
        if total < 0:
            raise ValueError("progress_bar: total must be >= 0 or None, got {}".format(total))
    import keras
    return keras.utils.Progbar(total, verbose=1 if verbose == 1 else 2, unit_name=unit_name)
