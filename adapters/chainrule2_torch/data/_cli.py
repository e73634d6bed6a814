"""Command-line data options shared by the example scripts: :func:`add_data_arguments` and :func:`load_splits`.

Typical use::

    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    args = parser.parse_args()
    train, val, test = load_splits(args)
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from ._demo import make_demo_dataset
from ._readers import read_camvid, read_folder, read_grabcut, read_isbi2012, read_voc, read_weizmann_horse
from ._sample import _NOT_FOUND_HINT, DATA_ROOT_ENV, Sample, data_root

__all__ = ["add_data_arguments", "load_splits"]

#: The ``--dataset`` choices.
DATASETS = ("demo", "weizmann_horse", "grabcut", "camvid", "isbi2012", "folder", "voc")
#: The ``--supervision`` choices.
SUPERVISIONS = ("auto", "real", "scribbles", "clicks")

# --dataset -> folder name under the data root (the default --root is data_root() / name)
_DATASET_DIRS = {
    "weizmann_horse": "weizmann_horse",
    "grabcut": "grabcut_scribbles",
    "camvid": "camvid",
    "isbi2012": "isbi2012_membrane",
    "voc": "voc",
}
_READERS: dict[str, Callable[..., list[Sample]]] = {
    "weizmann_horse": read_weizmann_horse,
    "grabcut": read_grabcut,
    "camvid": read_camvid,
    "isbi2012": read_isbi2012,
    "folder": read_folder,
    "voc": read_voc,
}
_REAL = {"grabcut": "GrabCut's human scribbles", "folder": "a folder's seeds/", "voc": "ScribbleSup's scribbles"}
_FOLDER_OPTIONS = {
    "num_classes": "--num-classes",
    "class_names": "--class-names",
    "mask_ignore": "--mask-ignore",
    "mask_values": "--mask-values",
}
# Ends a help text that states its own default: renders as nothing, and stops argparse's
# ArgumentDefaultsHelpFormatter from appending "(default: None)".
_OWN_DEFAULT = "%(default).0s"
_ARGS = ("dataset", "root", "supervision", "length", "size", "limit", "eval_limit", "data_seed", *_FOLDER_OPTIONS)


def _mask_value(text: str) -> tuple[int, int]:
    """``"255:1"`` -> ``(255, 1)`` (for ``--mask-values``)."""
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected VALUE:CLASS with two ints (e.g. 255:1), got {text!r}") from None


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the data options to ``parser`` (read back by :func:`load_splits`).

    Options: ``--dataset``, ``--root``, ``--supervision``, ``--length``, ``--size``, ``--limit``,
    ``--eval-limit``, ``--data-seed`` and, for ``--dataset folder``, ``--num-classes``,
    ``--class-names``, ``--mask-ignore`` and ``--mask-values`` (see ``docs/own_data.md``).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        Gets two argument groups, "data" and "data: --dataset folder".

    Examples
    --------
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_data_arguments(p)
    >>> p.parse_args(["--dataset", "folder", "--root", "my_data", "--mask-values", "0:0", "255:1"]).mask_values
    [(0, 0), (255, 1)]
    """
    if not isinstance(parser, argparse.ArgumentParser):
        raise TypeError(f"parser: expected an argparse.ArgumentParser, got {type(parser).__name__}")
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default="demo")
    g.add_argument(
        "--root",
        default=None,
        help=f"data set folder (default: ${DATA_ROOT_ENV}/<name>, or ../shared/data/<name> next to the repository "
        f"when {DATA_ROOT_ENV} is unset; <name>: {', '.join(_DATASET_DIRS.values())}; required for --dataset "
        f"folder){_OWN_DEFAULT}",
    )
    g.add_argument(
        "--supervision",
        choices=SUPERVISIONS,
        default="auto",
        help="where the training seeds come from: 'real' = the files' own scribbles (GrabCut's human scribbles, "
        "a folder's seeds/, VOC's ScribbleSup); 'scribbles'/'clicks' = synthesised from the masks; 'auto' = the "
        "files' own scribbles where the data set has them, else synthesised scribbles",
    )
    g.add_argument("--length", type=float, default=1.0, help="scribble length fraction (1.0, 0.8, 0.5, 0.3)")
    g.add_argument("--size", type=int, default=96, help="images are resized so that the longer side is this")
    g.add_argument("--limit", type=int, default=None, help="at most this many training images")
    g.add_argument("--eval-limit", type=int, default=None, help="at most this many val/test images")
    g.add_argument("--data-seed", type=int, default=0, help="split and seed-synthesis seed")
    f = parser.add_argument_group("data: --dataset folder (see docs/own_data.md)")
    f.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="number of classes (default: the lines of <root>/classes.txt, else 1 + the largest class id in "
        f"masks/ and seeds/){_OWN_DEFAULT}",
    )
    f.add_argument(
        "--class-names",
        nargs="+",
        default=None,
        metavar="NAME",
        help=f"class names, class 0 first (default: <root>/classes.txt, else class0, class1, ...){_OWN_DEFAULT}",
    )
    f.add_argument(
        "--mask-ignore",
        type=int,
        nargs="+",
        default=None,
        metavar="VALUE",
        help=f"mask values to ignore in training and metrics, e.g. a void label (default: none; 255 always is)"
        f"{_OWN_DEFAULT}",
    )
    f.add_argument(
        "--mask-values",
        type=_mask_value,
        nargs="+",
        default=None,
        metavar="VALUE:CLASS",
        help="remap mask values to class ids, every value listed, e.g. '0:0 255:1' for binary 0/255 masks "
        f"(CLASS 255 = ignored; default: none){_OWN_DEFAULT}",
    )


def _positive(args: argparse.Namespace, name: str) -> None:
    value = getattr(args, name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"--{name.replace('_', '-')}: expected a positive int, got {value!r}")


def _root(args: argparse.Namespace) -> Path:
    if args.dataset == "folder":
        if args.root is None:
            raise ValueError(
                "--root: --dataset folder needs --root <your folder> (with images/, seeds/ and/or masks/; see "
                f"docs/own_data.md), got none ({DATA_ROOT_ENV} only locates the shared data sets)"
            )
        return Path(args.root).expanduser()
    if args.root is not None:
        return Path(args.root).expanduser()
    name = _DATASET_DIRS[args.dataset]
    root = data_root() / name
    if not root.is_dir():
        env = os.environ.get(DATA_ROOT_ENV)
        default = f"${DATA_ROOT_ENV}/{name} ({DATA_ROOT_ENV}={env})" if env else f"../shared/data/{name}"
        raise FileNotFoundError(
            f"--root: data set folder not found: {root} (the default for --dataset {args.dataset}: {default}); "
            f"{_NOT_FOUND_HINT}"
        )
    return root


def load_splits(args: argparse.Namespace) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """Read the data set that :func:`add_data_arguments`' options describe.

    ``--supervision auto`` lets each data set use its own seeds: GrabCut's human scribbles, a
    folder's ``seeds/`` (when it exists), VOC's ScribbleSup scribbles; synthesised scribbles for the
    others. ``--supervision real`` on a data set without real scribbles is an error. The demo data
    set is ``make_demo_dataset(--limit or 48)``: first half train, next quarter val, last quarter test
    (``--eval-limit`` does not apply); elsewhere ``--limit`` caps the training split and
    ``--eval-limit`` each of val and test. All three splits use the same supervision.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options of a parser that :func:`add_data_arguments` set up.

    Returns
    -------
    (train, val, test) : three lists of Sample

    Raises
    ------
    ValueError
        On inconsistent options (each names its option), e.g. ``--supervision real`` on a data set
        without real scribbles, folder options with another data set, or an empty training split.
    FileNotFoundError
        If the data set's folder is missing (the message names ``--root`` and ``CHAINRULE2_DATA``).
    """
    missing = [name for name in _ARGS if not hasattr(args, name)]
    if missing:
        raise TypeError(f"args: expected the options of add_data_arguments, got a namespace without {missing}")
    dataset, supervision = args.dataset, args.supervision
    if dataset not in DATASETS:
        raise ValueError(f"--dataset: expected one of {DATASETS}, got {dataset!r}")
    if supervision not in SUPERVISIONS:
        raise ValueError(f"--supervision: expected one of {SUPERVISIONS}, got {supervision!r}")
    for name in ("size", "limit", "eval_limit"):
        _positive(args, name)
    given = [opt for name, opt in _FOLDER_OPTIONS.items() if getattr(args, name) is not None]
    if given and dataset != "folder":
        raise ValueError(f"{', '.join(given)}: only for --dataset folder, got --dataset {dataset}")
    if supervision == "real" and dataset not in _REAL:
        have = ", ".join(f"{k} ({v})" for k, v in _REAL.items())
        raise ValueError(
            f"--supervision: 'real' trains on the data set's own scribbles, and --dataset {dataset} has none; "
            f"data sets with real scribbles: {have}. Use --supervision auto, scribbles or clicks"
        )
    if dataset == "demo":
        if args.root is not None:
            raise ValueError(f"--root: the demo data set is generated, not read; got --root {args.root}")
        sup = "clicks" if supervision == "clicks" else "scribbles"
        every = make_demo_dataset(args.limit or 48, args.size, seed=args.data_seed, supervision=sup, length=args.length)
        n = len(every)
        splits: tuple[list[Sample], ...] = every[: n // 2], every[n // 2 : 3 * n // 4], every[3 * n // 4 :]
    else:
        if supervision == "auto":
            sup = {"grabcut": "real", "voc": "real", "folder": "auto"}.get(dataset, "scribbles")
        else:
            sup = supervision
        kw: dict[str, object] = dict(size=args.size, supervision=sup, length=args.length, seed=args.data_seed)
        if dataset == "folder":
            mask_values = None
            if args.mask_values is not None:
                mask_values = {}
                for value, cls in args.mask_values:
                    if value in mask_values:
                        raise ValueError(f"--mask-values: expected each mask value once, got {value} twice")
                    mask_values[value] = cls
            kw.update(
                num_classes=args.num_classes,
                class_names=args.class_names,
                mask_ignore=tuple(args.mask_ignore or ()),
                mask_values=mask_values,
            )
        root = _root(args)
        read = _READERS[dataset]
        splits = tuple(
            read(root, split, limit=args.limit if split == "train" else args.eval_limit, **kw)
            for split in ("train", "val", "test")
        )
    train, val, test = (list(s) for s in splits)
    if not train:
        where = "the demo data set" if dataset == "demo" else f"--dataset {dataset} in {_root(args)}"
        raise ValueError(
            f"--dataset: expected training items, got none from {where} (check --limit, the split lists, "
            "and that training items have seeds or masks)"
        )
    return train, val, test
