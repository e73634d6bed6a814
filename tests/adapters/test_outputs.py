"""Outputs people read: the PNG panels of chainrule2_torch.data.write_panel and examples/results_table.py."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chainrule2_torch.data import voc_palette, write_panel

ROOT = Path(__file__).resolve().parents[2]
PAL = voc_palette()
H, W = 24, 30  # scale ceil(256 / 24) = 11: tiles 330 x 264


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def _maps(h: int = H, w: int = W):
    image = np.full((h, w, 3), 150, np.uint8)
    image[:, : w // 2] = (200, 120, 60)
    seeds = np.full((h, w), 255, np.uint8)
    seeds[h // 3, 3 : w - 3] = 0  # one-pixel strokes, one per class
    seeds[2 * h // 3, 3 : w - 3] = 1
    mask = np.ones((h, w), np.uint8)
    mask[:, w // 2 :] = 2
    return image, seeds, mask


def _runs_of(rgb: np.ndarray, colour, axis: int) -> int:
    """The longest run of ``colour`` pixels along ``axis`` anywhere in ``rgb``."""
    hit = np.all(rgb == np.asarray(colour, np.uint8), axis=-1)
    if axis == 0:
        hit = hit.T
    best = 0
    for line in hit:
        edges = np.flatnonzero(np.diff(np.concatenate(([0], line.astype(np.int8), [0]))))
        if edges.size:
            best = max(best, int((edges[1::2] - edges[0::2]).max()))
    return best


def _truth_tile(rgb: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the rightmost class-1 | class-2 tile (``_maps``'s mask, nearest-upscaled)."""
    is2 = np.all(rgb == PAL[2], axis=-1)
    right = int(np.flatnonzero(is2.any(axis=0)).max())  # legend swatches are further left
    rows = np.flatnonzero(is2[:, right])
    top, height = int(rows.min()), int(rows.max() - rows.min() + 1)
    labelled = is2[top] | np.all(rgb[top] == PAL[1], axis=-1)
    left = right
    while left > 0 and labelled[left - 1]:
        left -= 1
    return top, left, height, right + 1 - left


def test_panel_is_png_with_big_tiles_titles_legend_and_caption(tmp_path):
    image, seeds, mask = _maps()
    path = write_panel(tmp_path / "sub" / "p.png", image, seeds, mask, mask, mask, num_classes=3, caption="id 7")
    assert path == tmp_path / "sub" / "p.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rgb = _read(path)
    top, left, th, tw = _truth_tile(rgb)
    assert (th, tw) == (11 * H, 11 * W) and min(th, tw) >= 256  # nearest-neighbour x11
    assert rgb.shape[1] == 8 + 5 * (tw + 8)
    assert top > 8  # the titles are above the tiles
    assert np.any(rgb[:top, left : left + tw] < 100)  # dark title text above the truth column
    # each label of the source is an exact 11 x 11 block: the class 1 | 2 border is at column 15 * 11
    assert np.all(rgb[top : top + th, left + 15 * 11 - 1] == PAL[1])
    assert np.all(rgb[top : top + th, left + 15 * 11] == PAL[2])
    # legend strip below the tiles: a swatch per class (class 0 black, 1, 2), inside a grey border
    below = rgb[top + th :]
    assert rgb.shape[0] > top + th + 20
    for k in (1, 2):
        assert _runs_of(below, PAL[k], axis=1) >= 8 and _runs_of(below, PAL[k], axis=0) >= 8
    assert _runs_of(below, (0, 0, 0), axis=1) >= 8  # class 0's black swatch (text strokes are thinner)


def test_panel_seeds_of_every_class_are_visible(tmp_path):
    image, seeds, mask = _maps()
    none = np.full_like(seeds, 255)
    base = _read(write_panel(tmp_path / "none.png", image, none, mask, mask, mask, num_classes=3))
    top, _, th, tw = _truth_tile(base)
    x1 = 8 + (tw + 8)  # the seeds column

    def seeds_tile(s):
        rgb = _read(write_panel(tmp_path / "s.png", image, s, mask, mask, mask, num_classes=3))
        return rgb[top : top + th, x1 : x1 + tw].astype(int)

    empty = seeds_tile(none)
    np.testing.assert_array_equal(empty[5, 5], (np.array([200, 120, 60]) * 0.4).astype(int))  # dimmed image
    for k in (0, 1):
        only = np.where(seeds == k, seeds, 255).astype(np.uint8)
        tile = seeds_tile(only)
        changed = np.any(tile != empty, axis=-1)
        assert changed.sum() >= (W - 6) * 11 * 11  # the stroke's pixels, each an 11 x 11 block, and more
        row = (H // 3 if k == 0 else 2 * H // 3) * 11 + 5
        np.testing.assert_array_equal(tile[row, 10 * 11], PAL[k])  # the class colour inside the stroke
        np.testing.assert_array_equal(tile[row - 6, 10 * 11], (255, 255, 255))  # a white outline (dark colours)
        assert not changed[row - 9, 10 * 11]  # outline 2 px: further away the image is untouched


def test_panel_class0_seeds_show_on_a_black_image(tmp_path):
    image = np.zeros((H, W, 3), np.uint8)
    seeds = np.full((H, W), 255, np.uint8)
    seeds[5, 5:20] = 0
    a = _read(write_panel(tmp_path / "a.png", image, seeds, num_classes=2))
    b = _read(write_panel(tmp_path / "b.png", image, np.full_like(seeds, 255), num_classes=2))
    diff = np.any(a != b, axis=-1)
    assert diff.any() and np.all(a[diff] == 255)  # white outline around the black strokes, nothing else


def test_panel_thin_strokes_widened_on_a_large_image(tmp_path):
    image = np.full((300, 300, 3), 100, np.uint8)  # already >= 256: scale 1
    seeds = np.full((300, 300), 255, np.uint8)
    seeds[150, 100:200] = 1
    rgb = _read(write_panel(tmp_path / "p.png", image, seeds, num_classes=2))
    assert rgb.shape[1] == 8 + 5 * 308
    tile = rgb[:, 8 + 308 : 8 + 308 + 300]  # the seeds column (the legend's swatch is left of it)
    assert _runs_of(tile, PAL[1], axis=0) == 3  # 1 px stroke -> 3 px in the class colour, then the outline
    assert _runs_of(tile, (255, 255, 255), axis=0) >= 3 + 2 * 2  # inside a 2 px white outline


def test_panel_missing_columns_are_grey_na_tiles_and_names_default(tmp_path):
    image, seeds, mask = _maps()
    rgb = _read(write_panel(tmp_path / "p.png", image, seeds, None, mask, None, num_classes=3))
    top, left, th, tw = _truth_tile(rgb)  # the prediction tile: the truth column is n/a
    assert left == 8 + 3 * (tw + 8) and rgb.shape[1] == 8 + 5 * (tw + 8)
    for col in (2, 4):
        x = 8 + col * (tw + 8)
        tile = rgb[top : top + th, x : x + tw]
        assert np.mean(np.all(tile == (200, 200, 200), axis=-1)) > 0.98  # grey, a little "n/a" text
        assert np.any(tile[th // 2 - 10 : th // 2 + 10].sum(axis=-1) < 400)
    named = _read(write_panel(tmp_path / "q.png", image, seeds, None, mask, None, class_names=("a", "b", "c")))
    assert named.shape == rgb.shape and not np.array_equal(named, rgb)  # the legend's names differ


def test_panel_bad_arguments_name_the_argument(tmp_path):
    image, seeds, mask = _maps()
    with pytest.raises(ValueError, match=r"seeds: expected shape \(24, 30\).*got \(24, 31\)"):
        write_panel(tmp_path / "p.png", image, np.zeros((H, W + 1), np.uint8))
    with pytest.raises(ValueError, match="mask"):
        write_panel(tmp_path / "p.png", image, seeds, mask=mask[:-1])
    with pytest.raises(ValueError, match="image"):
        write_panel(tmp_path / "p.png", image[..., 0])
    with pytest.raises(ValueError, match="class_names: expected 3"):
        write_panel(tmp_path / "p.png", image, seeds, num_classes=3, class_names=("a", "b"))
    with pytest.raises(TypeError, match="class_names"):
        write_panel(tmp_path / "p.png", image, seeds, class_names="ab")
    with pytest.raises(TypeError, match="num_classes"):
        write_panel(tmp_path / "p.png", image, seeds, num_classes=2.0)
    with pytest.raises(ValueError, match="titles"):
        write_panel(tmp_path / "p.png", image, seeds, titles=("a", "b"))
    assert list(tmp_path.iterdir()) == []


def test_panel_failed_write_leaves_no_temp_file_and_keeps_the_old_file(tmp_path, monkeypatch):
    image, seeds, mask = _maps()
    path = write_panel(tmp_path / "p.png", image, seeds)
    before = path.read_bytes()

    def broken(self, fp, *args, **kwargs):  # writes a partial file, then fails
        if isinstance(fp, (str, os.PathLike)):
            Path(fp).write_bytes(b"partial")
        else:
            fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        write_panel(tmp_path / "p.png", image, seeds, mask, mask, mask)
    with pytest.raises(OSError, match="disk full"):
        write_panel(tmp_path / "new.png", image, seeds)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"] and path.read_bytes() == before


# ---- examples/results_table.py ----


def _results_table():
    spec = importlib.util.spec_from_file_location("results_table", ROOT / "examples" / "results_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(folder: Path, test, val, pseudo=None, seconds=30.0, epochs=(("warmup", 1.0, 0.0), ("grid-tr", 2.0, 0.5))):
    """A fake run folder as training.train writes it: final.json and metrics.jsonl."""
    folder.mkdir(parents=True)
    final = {"method": folder.name, "seconds": seconds, "command": f"python x.py --out {folder.name}"}
    if test is not None:
        final["test"] = {"miou": test, "iou": [test], "images": 3}
    if val is not None:
        final["val"] = {"miou": val, "iou": [val], "images": 3}
    if pseudo is not None:
        final["pseudo_miou"] = pseudo
    (folder / "final.json").write_text(json.dumps(final, indent=1))
    records = [
        {"epoch": i, "phase": p, "loss": 0.5, "epoch_s": e, "stage_a_s": a} for i, (p, e, a) in enumerate(epochs)
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _fake_results(root: Path) -> None:
    _run(root / "horse_full" / "pce", 70.9, 71.2, epochs=(("warmup", 1.5, 0.0), ("pce", 1.5, 0.0)))
    _run(root / "horse_full" / "grid-tr", 71.6, 72.0, pseudo=80.1, seconds=52.0)
    _run(root / "horse_full" / "full", 77.2, 78.0, epochs=(("full", 1.2, 0.0),))
    _run(root / "camvid" / "pce", 21.1, 24.6)
    _run(root / "camvid" / "adm", 12.4, 21.7, pseudo=64.3)
    (root / "horse_full" / "warmup.pt").write_bytes(b"not a run")


# what the script printed for _fake_results before the figure was added (the format of docs/results.md)
EXPECTED_TABLE = """\
| setting | method | test mIoU | val mIoU | stage-A labels mIoU (train) | s/epoch (after warm-up) | stage-A share | run s |
|---|---|---|---|---|---|---|---|
| camvid | pce | 21.1 | 24.6 | – | 2.0 | 25 % | 30 |
| camvid | adm | 12.4 | 21.7 | 64.3 | 2.0 | 25 % | 30 |
| horse_full | pce | 70.9 | 71.2 | – | 1.5 | 0 % | 30 |
| horse_full | grid-tr | 71.6 | 72.0 | 80.1 | 2.0 | 25 % | 52 |
| horse_full | full | 77.2 | 78.0 | – | 1.2 | 0 % | 30 |

    python x.py --out pce
    python x.py --out adm
    python x.py --out pce
    python x.py --out grid-tr
    python x.py --out full
"""


def _bar_heights(rgb: np.ndarray, colour) -> list[int]:
    """Heights of the bars of ``colour`` (left to right): the tallest column of each run of columns."""
    hit = np.all(rgb == np.asarray(colour, np.uint8), axis=-1)
    heights = hit.sum(axis=0)
    out, prev = [], 0
    for h in heights:
        if h and not prev:
            out.append(0)
        if h:
            out[-1] = max(out[-1], int(h))
        prev = h
    return out


def test_results_table_prints_the_unchanged_table_and_a_figure(tmp_path, capsys):
    rt = _results_table()
    _fake_results(tmp_path / "runs")
    path = rt.main(str(tmp_path / "runs"), figure=tmp_path / "fig" / "results.png")
    assert capsys.readouterr().out == EXPECTED_TABLE
    assert path == tmp_path / "fig" / "results.png"
    rgb = _read(path)
    # 2 settings x 4 methods: 64 + 2 * (max(4 * 34, 150) + 30) + 120 wide, 48 + 320 + 40 high
    assert rt.figure_size(2, 4) == (544, 408) and rgb.shape == (408, 544, 3)
    # y axis 0..100 (largest bar 77.2 plus room), plot 320 px: bars are 320 * mIoU / 100 px tall (+ legend swatch)
    plot = rgb[:, : 544 - rt.LEGEND_W]
    assert _bar_heights(plot, rt.COLOURS["pce"]) == [round(3.2 * 21.1), round(3.2 * 70.9)]
    assert _bar_heights(plot, rt.COLOURS["adm"]) == [round(3.2 * 12.4)]
    assert _bar_heights(plot, rt.COLOURS["grid-tr"]) == [round(3.2 * 71.6)]
    assert _bar_heights(rgb[:, 544 - rt.LEGEND_W :], rt.COLOURS["full"]) == [12]  # the legend swatch, outlined
    assert list((tmp_path / "fig").iterdir()) == [path]  # no temp file left


def test_results_table_default_figure_path_and_cli(tmp_path):
    _fake_results(tmp_path / "runs")
    script = ROOT / "examples" / "results_table.py"
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "runs")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == EXPECTED_TABLE and "results.png" in done.stderr
    assert _read(tmp_path / "runs" / "results.png").shape == (408, 544, 3)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert done.returncode == 2 and "root: expected a folder" in done.stderr


def test_results_table_seeds_give_mean_and_sd(tmp_path, capsys):
    rt = _results_table()
    root = tmp_path / "runs"
    for k, v in enumerate((65.5, 64.1, 66.3)):
        _run(root / "horse_30" / "grid-tr" / f"seed{k}", v, v + 1)
    for k, v in enumerate((60.0, 62.0)):
        _run(root / "horse_30" / f"pce_seed{k}", v, v + 1)
    _run(root / "horse_30" / "grid-gd_seedx", 50.0, 50.0)  # not a seed folder: ignored
    path = rt.main(str(root), figure=tmp_path / "f.png")
    out = capsys.readouterr().out
    assert "| horse_30 | pce (seed 0) | 60.0 |" in out and "| horse_30 | grid-tr (seed 2) | 66.3 |" in out
    assert "grid-gd" not in out and out.count("| horse_30 |") == 5
    mean, sd, n = rt.mean_sd([65.5, 64.1, 66.3])
    assert n == 3 and mean == pytest.approx(65.3) and sd == pytest.approx(math.sqrt((0.04 + 1.44 + 1.0) / 2))
    rgb = _read(path)
    assert rgb.shape[:2] == rt.figure_size(1, 2)[::-1]
    plot = rgb[:, : rgb.shape[1] - rt.LEGEND_W]
    # y axis 0..80 (66.5 + room for labels): 320 / 80 = 4 px per point
    assert _bar_heights(plot, rt.COLOURS["grid-tr"]) == [round(4 * mean)]  # the mean's bar
    assert _bar_heights(plot, rt.COLOURS["pce"]) == [round(4 * 61.0)]
    # the error bar: a black vertical line from mean - sd to mean + sd through the bar's centre
    hit = np.all(plot == rt.COLOURS["grid-tr"], axis=-1)
    cols = np.flatnonzero(hit.any(axis=0))
    cx = (cols.min() + cols.max() + 1) // 2
    black = np.flatnonzero(np.all(plot[:, cx] == 0, axis=-1))
    base = rt.TOP + rt.PLOT_H
    expected_top = round(base - 4 * (mean + sd))
    assert expected_top in black and round(base - 4 * (mean - sd)) in black
    assert set(range(expected_top, round(base - 4 * mean))) <= set(black)  # the line above the bar's top
    assert not np.any((black > expected_top - 4) & (black < expected_top))  # nothing black just above it


def test_results_table_missing_values_print_na(tmp_path, capsys):
    rt = _results_table()
    root = tmp_path / "runs"
    _run(root / "s" / "pce", float("nan"), None)  # NaN test, no val
    _run(root / "s" / "grid-tr", 60.0, 61.0, pseudo=float("nan"))
    (root / "s" / "grid-tr" / "metrics.jsonl").unlink()
    final = json.loads((root / "s" / "pce" / "final.json").read_text())
    final.update(val=None, seconds=None)
    (root / "s" / "pce" / "final.json").write_text(json.dumps(final))
    path = rt.main(str(root), figure=tmp_path / "f.png")
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "| s | pce | n/a | n/a | – | 2.0 | 25 % | n/a |"
    assert lines[3] == "| s | grid-tr | 60.0 | 61.0 | n/a | n/a | n/a | 30 |"
    rgb = _read(path)
    plot = rgb[:, : rgb.shape[1] - rt.LEGEND_W]
    assert _bar_heights(plot, rt.COLOURS["pce"]) == []  # no bar for a missing value ("n/a" instead)
    assert _bar_heights(plot, rt.COLOURS["grid-tr"]) == [round(320 * 60.0 / 80.0)]  # y axis 0..80


def test_the_investigation_table_is_validation_only_with_mean_sd_and_the_mechanism(tmp_path):
    rt = _results_table()
    for seed, (val, fit) in enumerate(((70.0, 0.9), (72.0, 0.8))):
        folder = tmp_path / "horse_restart" / "grid-tr" / f"seed{seed}"
        _run(folder, 99.0, val, pseudo=80.0)
        final = json.loads((folder / "final.json").read_text())
        (folder / "final.json").write_text(json.dumps({**final, "target_fit": fit, "network_train_miou": 75.0}))
        records = [
            {"epoch": 0, "phase": "warmup", "loss": 1.0, "epoch_s": 1.0, "val_miou": 60.0},
            {"epoch": 1, "phase": "grid-tr", "loss": 1.0, "epoch_s": 2.0, "val_miou": 65.0 + seed, "stage_a_s": 0.5,
             "stage_a_solve_s": 0.4, "stage_a_changed": 0.1, "network_train_miou": 70.0, "pseudo_miou": 78.0},
        ]  # fmt: skip
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    lines = rt.mechanism(rt.collect(tmp_path))
    assert "test" not in lines[0] and "99" not in "".join(lines)  # the test split is never shown
    row = lines[2].split(" | ")
    assert row[:3] == ["| horse_restart", "grid-tr", "2"]
    assert row[3] == "71.0 ± 1.4" and row[4] == "65.5 ± 0.7"  # val; val after the switch
    assert row[5:8] == ["70.0 ± 0.0", "78.0 ± 0.0", "10.0 ± 0.0"] and row[8] == "85.0 ± 7.1"  # mechanism, fit in %
    assert row[-1].startswith("0: 70.0, 1: 72.0")


def test_the_summary_table_pairs_seeds_and_calls_a_difference_inside_the_spread_a_tie(tmp_path, capsys):
    rt = _results_table()
    root = tmp_path / "runs"
    rows = {"pce": (60.0, 62.0, 61.0), "grid-tr": (65.0, 66.0, 64.0), "full": (80.0, 80.0, 80.0)}
    for m, values in rows.items():
        for k, v in enumerate(values):
            _run(root / "clicks" / m / f"seed{k}", v, v)
    for k, (p, t) in enumerate(((60.0, 60.5), (70.0, 71.0), (65.0, 64.0))):  # +0.5, +1, -1: far inside sd 5
        _run(root / "horse" / "pce" / f"seed{k}", p, p)
        _run(root / "horse" / "grid-tr" / f"seed{k}", t, t)
    rt.main(str(root), figure=False, metric="summary")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| setting | seeds | pce | grid-tr | full | grid-tr − pce | gap closed by grid-tr |"
    # clicks: +5, +4, +3 (mean +4 > the larger sd, 1.0): a win; the gap 80 - 61 = 19, closed by 4
    assert (
        lines[2] == "| clicks | 0, 1, 2 | 61.0 ± 1.0 | 65.0 ± 1.0 | 80.0 ± 0.0 | +4.0 (+5.0, +4.0, +3.0; win) | 21 % |"
    )
    assert lines[3].startswith("| horse | 0, 1, 2 | 65.0 ± 5.0 | 65.2 ± 5.3 |  | +0.2 (+0.5, +1.0, -1.0; tie) | n/a |")
    c = rt.compare([(0, {"test": 50.0}), (1, {"test": 51.0})], [(1, {"test": 40.0})])
    assert c["seeds"] == [1] and c["diffs"] == [-11.0] and c["verdict"] == "tie"  # one pair: no spread, no claim


def test_a_variant_setting_is_compared_with_its_base_settings_baselines(tmp_path, capsys):
    rt = _results_table()
    root = tmp_path / "runs"
    for k, (p, t, a) in enumerate(((60.0, 61.0, 66.0), (62.0, 63.0, 67.0))):
        _run(root / "horse_long" / "pce" / f"seed{k}", p, p)
        _run(root / "horse_long" / "grid-tr" / f"seed{k}", t, t)
        _run(root / "horse_long_auto" / "grid-tr" / f"seed{k}", a, a)
    _run(root / "horse" / "grid-tr", 1.0, 1.0)  # a shorter prefix without pce is no base
    rt.main(str(root), figure=False, metric="summary")
    out = capsys.readouterr().out
    assert "| horse_long_auto | 0, 1 | 61.0 ± 1.4 | 66.5 ± 0.7 | +5.5 (+6.0, +5.0; win) |" in out
    # horse_long's pce and grid-tr, horse_long_auto's grid-tr: the borrowed pce command is not repeated
    assert out.count("--out seed0") == 3
    assert rt._base_setting("horse_long_auto", {"horse_long": {"pce": []}, "horse": {"pce": []}}) == "horse_long"


def test_a_baseline_only_variant_is_compared_with_its_base_settings_grid_tr(tmp_path, capsys):
    rt = _results_table()
    root = tmp_path / "runs"
    for k, (p, t, g, a) in enumerate(((60.0, 64.0, 59.0, 66.0), (62.0, 65.0, 60.0, 67.0))):
        _run(root / "horse_long" / "pce" / f"seed{k}", p, p)
        _run(root / "horse_long" / "grid-tr" / f"seed{k}", t, t)
        _run(root / "horse_long_gd1" / "grid-gd" / f"seed{k}", g, g)  # a baseline at its own lambda
        _run(root / "horse_long_auto" / "grid-tr" / f"seed{k}", a, a)
    rt.main(str(root), figure=False, metric="summary")
    lines = capsys.readouterr().out.splitlines()
    head = lines[0][2:-2].split(" | ")
    rows = {cells[0]: cells for line in lines[2:] if line.startswith("| ") and (cells := line[2:-2].split(" | "))}
    gd = dict(zip(head, rows["horse_long_gd1"], strict=True))
    assert gd["grid-gd"] == "59.5 ± 0.7" and gd["grid-tr"] == "64.5 ± 0.7"  # the base's grid-tr, paired by seed
    assert gd["grid-tr − grid-gd"] == "+5.0 (+5.0, +5.0; win)"
    # a variant of the method itself keeps its own grid-tr only
    auto = dict(zip(head, rows["horse_long_auto"], strict=True))
    assert auto["grid-tr"] == "66.5 ± 0.7" and auto["grid-gd"] == "" and auto["grid-tr − grid-gd"] == ""


def test_update_doc_regenerates_the_marked_tables_only(tmp_path):
    rt = _results_table()
    root = tmp_path / "runs"
    for k, (p, t) in enumerate(((60.0, 65.0), (62.0, 66.0))):
        _run(root / "horse_long" / "pce" / f"seed{k}", p, p + 1)
        _run(root / "horse_long" / "grid-tr" / f"seed{k}", t, t + 1)
    doc = tmp_path / "results.md"
    block = f"<!-- results_table: {root} --metric summary-val --settings 'horse_*' -->\nstale\n<!-- /results_table -->"
    doc.write_text(f"# Results\n\nprose stays\n\n{block}\n\nmore prose\n")
    assert rt.update_doc(doc) == 1
    text = doc.read_text()
    assert "stale" not in text and text.startswith("# Results\n\nprose stays\n\n<!-- results_table: ")
    assert "| horse_long | 0, 1 | 62.0 ± 1.4 | 66.5 ± 0.7 | +4.5 (+5.0, +4.0; win) |" in text  # val = test + 1
    assert text.endswith("<!-- /results_table -->\n\nmore prose\n") and "python x.py" not in text
    assert rt.update_doc(doc) == 1 and doc.read_text() == text  # idempotent


def test_no_gap_share_when_full_supervision_is_within_the_seeds_spread_of_pce(tmp_path, capsys):
    rt = _results_table()
    root = tmp_path / "runs"
    for m, values in {"pce": (26.0, 28.0), "grid-tr": (28.0, 29.0), "full": (27.0, 28.5)}.items():
        for k, v in enumerate(values):
            _run(root / "camvid" / m / f"seed{k}", v, v)
    rt.main(str(root), figure=False, metric="summary")
    assert capsys.readouterr().out.splitlines()[2].endswith("| n/a |")  # gap 0.75 < pce's sd 1.4
