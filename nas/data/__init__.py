"""Data: dataset layouts, checks, preprocessing, cache, splits, augmentation, synthetic data.

The modules, in the order data flows through them:
`layouts` (find pairs) -> `files`/`validate` (read and check) -> `preprocess` (crop, resize) ->
`cache`/`store` (keep uint8 arrays) -> `splits` (who goes where) -> `augment` + `dataset`
(tensors, loaders) -> `bundle` (`build_data`, what the rest of the code calls). `synthetic` is the
built-in dataset.
"""

from nas.data.augment import Augmenter, build_augmenter
from nas.data.bundle import DataBundle, build_data
from nas.data.dataset import SegmentationDataset, make_loader
from nas.data.layouts import layout_names, scan_folder
from nas.data.preprocess import (CropBox, center_crop_box, load_original, preprocess_image, preprocess_mask,
                                 uncrop)
from nas.data.records import Problem, Record
from nas.data.splits import read_splits, write_splits
from nas.data.synthetic import generate_pair, write_dataset
from nas.data.validate import DataError

__all__ = [
    "Augmenter", "build_augmenter", "DataBundle", "build_data", "SegmentationDataset", "make_loader",
    "layout_names", "scan_folder", "CropBox", "center_crop_box", "load_original", "preprocess_image",
    "preprocess_mask", "uncrop", "Problem", "Record", "read_splits", "write_splits", "generate_pair",
    "write_dataset", "DataError",
]
