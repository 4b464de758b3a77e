"""``stoker.keras.Dataset``: the same loader as a Keras 3 ``PyDataset``, which
``model.fit`` takes (``len`` is the batches per epoch; each epoch is the loader's next).

Keras asks for batches by index; stoker makes them in order ahead of time. In-order requests
(what ``model.fit`` does) come straight from the stream; any other index restarts the epoch
at that batch (its position is ``index * batch_size``).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from .loader import Loader

__all__ = ["Dataset"]


class Dataset(keras.utils.PyDataset):
    """``model.fit(stoker.keras.Dataset("data/train", batch_size=64, size=(144, 256),
    shuffle=True, augment="default", normalize="imagenet"), epochs=10)``: the arguments of
    ``stoker.Loader``. Batches are numpy arrays over stoker's buffers, ``(images, labels)``;
    ``layout`` defaults to ``"NHWC"``, Keras' ``channels_last``."""

    def __init__(self, path: Any, *, layout: str = "NHWC", **kwargs: Any) -> None:
        # Keras' own workers would only reorder what stoker's workers already made.
        super().__init__(workers=1, use_multiprocessing=False)
        self.loader = Loader(path, layout=layout, **kwargs)
        self._epoch = 0
        self._next_index: int | None = None
        self._batches: Any = None

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def num_batches(self) -> int:
        return len(self.loader)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        if index != self._next_index:
            self._restart(index)
        batch = next(self._batches)
        self._next_index = index + 1
        if batch.labels is None:
            raise ValueError("this data set has no labels: model.fit needs them")
        return batch.images, batch.labels

    def _restart(self, index: int) -> None:
        if self._batches is not None:
            self._batches.close()
        state = self.loader.state_dict()
        state["epoch"] = self._epoch
        state["position"] = index * self.loader.batch_size
        self.loader.load_state_dict(state)
        self._batches = self.loader.batches()

    def on_epoch_end(self) -> None:
        if self._batches is not None:
            self._batches.close()
        self._batches = None
        self._next_index = None
        self._epoch += 1
