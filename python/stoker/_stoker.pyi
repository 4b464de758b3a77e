"""Type stubs of the compiled core, ``stoker._stoker`` (see the Python modules for the API)."""

from collections.abc import Sequence
from typing import Any, final

__version__: str

@final
class Tensor:
    """One tensor of a batch (images or labels) as DLPack: ``numpy.from_dlpack`` and
    ``torch.from_dlpack`` take it without a copy."""

    def __dlpack__(
        self,
        *,
        stream: Any | None = None,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> Any: ...
    def __dlpack_device__(self) -> tuple[int, int]: ...
    @property
    def data_ptr(self) -> int: ...
    @property
    def shape(self) -> list[int]: ...

@final
class Batch:
    """One batch of the Rust loader; its buffer returns to the pool when the batch and every
    array or tensor over it are freed."""

    def images(self, *, bits16: bool = False) -> Tensor: ...
    def labels(self) -> Tensor | None: ...
    @property
    def indices(self) -> list[int]: ...
    @property
    def epoch(self) -> int: ...
    @property
    def first_position(self) -> int: ...
    @property
    def next_position(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    def __len__(self) -> int: ...

@final
class Digest:
    """The digest of a run of batches, as ``stoker bench --digest`` prints it."""

    def __init__(self) -> None: ...
    def update(self, batch: Batch) -> None: ...
    def hexdigest(self) -> str: ...

@final
class Augment:
    """Keras-style augmentation settings (Keras 2's ``ImageDataGenerator`` names)."""

    def __init__(
        self,
        *,
        rotation_range: float = 0.0,
        width_shift_range: float = 0.0,
        height_shift_range: float = 0.0,
        zoom_range: float | tuple[float, float] | None = None,
        horizontal_flip: bool = False,
        vertical_flip: bool = False,
        fill_mode: str = "nearest",
        cval: float = 0.0,
        brightness_range: tuple[float, float] | None = None,
        contrast_range: tuple[float, float] | None = None,
        noise_std: float = 0.0,
        salt_pepper: float = 0.0,
        random_resized_crop: tuple[tuple[float, float], tuple[float, float]] | None = None,
        isotropic_zoom: bool = False,
        interpolation: str = "bilinear",
        ycbcr: bool = False,
    ) -> None: ...
    @staticmethod
    def default() -> Augment: ...
    @staticmethod
    def from_spec(spec: str) -> Augment: ...
    def spec(self) -> str: ...

@final
class Core:
    """The Rust loader behind the Python loaders."""

    def __init__(
        self,
        path: str,
        *,
        labels: str | None = None,
        images_key: str | None = None,
        batch_size: int = 64,
        size: tuple[int, int] | None = None,
        channels: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
        num_workers: int | None = None,
        prefetch: int = 2,
        prefetch_next_epoch: bool = True,
        augment: Augment | None = None,
        dtype: str = "float32",
        layout: str = "NCHW",
        normalize: str | tuple[Sequence[float], Sequence[float]] | None = None,
        on_error: str = "raise",
        max_skipped: int | float | str | None = None,
        decode_policy: str = "tolerant",
        max_image_pixels: int | None = None,
        drop_last: bool = False,
        num_classes: int | None = None,
        ignore_label: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        partition: str = "pad",
        order: str = "global",
    ) -> None: ...
    def __len__(self) -> int: ...
    def begin(self) -> tuple[int, int]: ...
    def next(self) -> Batch | None: ...
    def end(self) -> None: ...
    def set_epoch(self, epoch: int) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def load_checkpoint(self, checkpoint: str) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    @property
    def samples(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def num_workers(self) -> int: ...
    @property
    def prefetch(self) -> int: ...
    @property
    def rank(self) -> int: ...
    @property
    def world_size(self) -> int: ...
    @property
    def spec(self) -> tuple[tuple[int, int, int], str, str]: ...
    @property
    def description(self) -> str: ...

def cli(argv: list[str]) -> int: ...
def plan_json(args: list[str]) -> str: ...
def has_hdf5() -> bool: ...
def merge_checkpoints(parts: list[str]) -> str: ...
