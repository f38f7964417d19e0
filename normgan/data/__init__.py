"""Image datasets for normgan: built-ins, folders of images and IDX files.

    from normgan.data import load_dataset, batch_to_float
    data = load_dataset(name="mnist5k", resolution=32, split="train")
    data.images        # uint8 (N, 1, 32, 32)
    batch_to_float(data.images[:64])   # float32 in [-1, 1]

``DATASETS`` maps ``data.name`` to its loader; importing this package
registers ``mnist5k``, ``digits``, ``faces``, ``textures``, ``folder`` and ``idx``;
``PAIRED_DATASETS`` (see :mod:`normgan.data.paired`) maps the paired image-to-image datasets
to theirs, loaded with :func:`load_paired`.  :mod:`normgan.data.folds` cuts a training split into
k folds (:func:`apply_fold`) and guards a search against reading the test split (:func:`forbid_splits`).
:mod:`normgan.data.stream` lists a folder's split without decoding it (:func:`list_split`) and decodes its
batches on the fly in DataLoader workers (:class:`StreamBatches`) for folders larger than memory.
"""

from normgan.data import builtin, folder, idx, paired  # noqa: F401  (register loaders)
from normgan.data.dataset import DATASETS, ImageData, Source, load_dataset
from normgan.data.folds import LeakError, apply_fold, check_folds, fold_part, forbid_splits, kfold_indices
from normgan.data.paired import (
    BASELINES,
    PAIRED_DATASETS,
    PAIRED_SPLITS,
    PairedData,
    PairedSource,
    is_paired,
    load_paired,
    paired_crop_flip,
    targets_as_imagedata,
)
from normgan.data.stream import FileSplit, ShuffledEpochs, StreamBatches, list_split, should_stream
from normgan.data.transforms import (
    batch_to_float,
    center_crop,
    center_crop_resize,
    center_pad,
    convert_channels,
    fit_to_resolution,
)

__all__ = [
    "FileSplit",
    "ShuffledEpochs",
    "StreamBatches",
    "list_split",
    "should_stream",
    "LeakError",
    "apply_fold",
    "check_folds",
    "fold_part",
    "forbid_splits",
    "kfold_indices",
    "BASELINES",
    "PAIRED_DATASETS",
    "PAIRED_SPLITS",
    "PairedData",
    "PairedSource",
    "is_paired",
    "load_paired",
    "paired_crop_flip",
    "targets_as_imagedata",
    "DATASETS",
    "ImageData",
    "Source",
    "batch_to_float",
    "center_crop",
    "center_crop_resize",
    "center_pad",
    "convert_channels",
    "fit_to_resolution",
    "load_dataset",
]
