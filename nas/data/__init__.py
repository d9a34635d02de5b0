"""Data: dataset layouts, checks, preprocessing, cache, splits, augmentation, synthetic data.

The modules, in the order data flows through them:
`layouts` (find pairs) -> `files` + `validate` (read, refuse damaged files, check pairs) ->
`preprocess` (center crop, resize; and its inverse for predictions) -> `cache` + `store` (one
checked pass up front, uint8 arrays kept) -> `groups` (images that split together, e.g. one
lesion's) + `splits` (who goes where, `splits.json`) ->
`augment` + `dataset` (tensors, seeded loaders) -> `bundle` (`build_data`, what the rest of the
code calls). `synthetic` is the built-in dataset; `records` holds the shared value types and
`seeding` how seeds become generators.
"""

from nas.data.augment import Augmenter, build_augmenter
from nas.data.bundle import DataBundle, build_data, build_eval_dataset
from nas.data.dataset import SegmentationDataset, make_loader
from nas.data.layouts import layout_names, scan_folder
from nas.data.preprocess import (CropBox, center_crop_box, load_original, preprocess_image, preprocess_mask)
from nas.data.records import Problem, Record
from nas.data.splits import read_splits, write_splits
from nas.data.synthetic import generate_pair, write_dataset
from nas.data.validate import DataError

__all__ = [
    "Augmenter", "build_augmenter", "DataBundle", "build_data", "build_eval_dataset", "SegmentationDataset", "make_loader",
    "layout_names", "scan_folder", "CropBox", "center_crop_box", "load_original", "preprocess_image",
    "preprocess_mask", "Problem", "Record", "read_splits", "write_splits", "generate_pair",
    "write_dataset", "DataError",
]
