"""Data for chainrule2's torch adapter: samples, readers, seed synthesis, augmentation, collation,
metrics, panels and a generated demo data set.

Conventions (:mod:`chainrule2.constants`): seeds/labels use 255 = unlabeled (ignored in metrics)
and 254 = padding; images are ``(H, W, 3)`` uint8 RGB; every random choice takes an explicit
``numpy.random.Generator`` or seed. Real data is read from local folders only
(:func:`data_root` gives the default location of the shared data sets).
"""

from ._cli import add_data_arguments, load_splits
from ._collate import IMAGENET_MEAN, IMAGENET_STD, SampleDataset, collate, normalize
from ._demo import DEMO_CLASSES, make_demo_dataset
from ._io import read_image, read_labels, to_rgb
from ._metrics import Scores, confusion_matrix, evaluate, scores
from ._panels import colorize, voc_palette, write_panel
from ._readers import (
    ISBI_SPLITS,
    VOC_CLASSES,
    camvid_classes,
    item_rng,
    read_camvid,
    read_folder,
    read_grabcut,
    read_isbi2012,
    read_voc,
    read_weizmann_horse,
    shorten_strokes,
    split_ids,
)
from ._sample import DATA_ROOT_ENV, DataWarning, NoSeedsWarning, Sample, data_root
from ._synthesis import synthesize_clicks, synthesize_scribbles, synthesize_seeds
from ._transforms import Augmentation, resize_image, resize_labels, resize_sample, resize_seeds, target_size

DATA_ROOT = data_root()  #: the default data root at import time (see :func:`data_root`)

__all__ = [
    "DATA_ROOT",
    "DATA_ROOT_ENV",
    "DEMO_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ISBI_SPLITS",
    "VOC_CLASSES",
    "Augmentation",
    "DataWarning",
    "NoSeedsWarning",
    "Sample",
    "SampleDataset",
    "Scores",
    "add_data_arguments",
    "camvid_classes",
    "collate",
    "colorize",
    "confusion_matrix",
    "data_root",
    "evaluate",
    "item_rng",
    "load_splits",
    "make_demo_dataset",
    "normalize",
    "read_camvid",
    "read_folder",
    "read_grabcut",
    "read_image",
    "read_isbi2012",
    "read_labels",
    "read_voc",
    "read_weizmann_horse",
    "resize_image",
    "resize_labels",
    "resize_sample",
    "resize_seeds",
    "scores",
    "shorten_strokes",
    "split_ids",
    "synthesize_clicks",
    "synthesize_scribbles",
    "synthesize_seeds",
    "target_size",
    "to_rgb",
    "voc_palette",
    "write_panel",
]
