"""Data sets and image preprocessing.

    from lowbit.data import ImageOptions, open_dataset
    data = open_dataset("calib/", specs, image_options=ImageOptions(mean=(127.5,), scale=(1 / 127.5,)))
    for sample in data.take(100):   # {"input": (1, 3, 224, 224) float32}
        ...
"""

from lowbit.data.datasets import (
    ArrayDataset,
    Dataset,
    ImageFolderDataset,
    SampleFolderDataset,
    check_finite,
    open_dataset,
    save_npz_dataset,
)
from lowbit.data.images import ImageOptions, load_image

__all__ = [
    "ArrayDataset",
    "Dataset",
    "ImageFolderDataset",
    "ImageOptions",
    "SampleFolderDataset",
    "check_finite",
    "load_image",
    "open_dataset",
    "save_npz_dataset",
]
