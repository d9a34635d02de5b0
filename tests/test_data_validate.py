"""Bad data is named file by file: stop (on_bad=error) or leave out with a counted warning (skip)."""

from __future__ import annotations

import logging
import shutil

import cv2
import numpy as np
import pytest

from nas.data import DataError, build_data
from nas.data.files import truncation_reason
from nas.data.layouts import scan_folder
from nas.data.store import prepare
from test_data_fixtures import SAMPLE, cfg_for, make_layout, write

TRAIN = "ISIC-2017_Training_Data"
GT = "ISIC-2017_Training_Part1_GroundTruth"


def _truncate(path, keep=0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture
def damaged(tmp_path):
    """An ISIC 2017 folder with one of each kind of problem; returns (root, {file name: reason word})."""
    root = make_layout(tmp_path, "isic2017", n=8)
    (root / GT / "ISIC_0000000_segmentation.png").unlink()                       # image without mask
    (root / TRAIN / "ISIC_0000001.jpg").unlink()                                 # mask without image
    _truncate(root / TRAIN / "ISIC_0000002.jpg")                                 # truncated JPEG
    write(root / GT / "ISIC_0000003_segmentation.png", np.full((20, 20), 255, np.uint8))  # size mismatch
    write(root / GT / "ISIC_0000004_segmentation.png",                            # not binary
          np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (30, 1)))
    (root / TRAIN / "ISIC_0000005.jpg").write_bytes(b"this is not a jpeg at all")  # corrupt
    write(root / GT / "ISIC_0000006_segmentation.png", (cv2.imread(                # 0/1 mask
        str(root / GT / "ISIC_0000006_segmentation.png"), cv2.IMREAD_GRAYSCALE) > 0).astype(np.uint8))
    expected = {"ISIC_0000000.jpg": "without mask", "ISIC_0000001_segmentation.png": "without image",
                "ISIC_0000002.jpg": "truncated JPEG", "ISIC_0000003_segmentation.png": "must match",
                "ISIC_0000004_segmentation.png": "not a binary mask", "ISIC_0000005.jpg": "cannot be decoded",
                "ISIC_0000006_segmentation.png": "0/1"}
    return root, expected


def test_every_problem_is_named(damaged):
    root, expected = damaged
    scan = scan_folder(root)
    problems = scan.problems + prepare(scan.records, 16, cache="none").problems
    got = {p.path.name: p.reason for p in problems}
    assert set(got) == set(expected)
    for name, word in expected.items():
        assert word in got[name], (name, got[name])


def test_error_mode_raises_one_line_listing_count(damaged, capsys):
    root, expected = damaged
    with pytest.raises(DataError) as err:
        build_data(cfg_for(root), "train")
    msg = str(err.value)
    assert "\n" not in msg and f"{len(expected)} bad data files" in msg and "on_bad=skip" in msg
    assert {p.path.name for p in err.value.problems} == set(expected)
    printed = capsys.readouterr().err
    assert all(name in printed for name in expected)


def test_skip_mode_leaves_them_out_with_a_counted_warning(damaged, caplog):
    root, expected = damaged
    with caplog.at_level(logging.WARNING, logger="nas.data"):
        bundle = build_data(cfg_for(root, "data.on_bad=skip"), "train")
    assert f"left out {len(expected)} files" in caplog.text
    ids = {r.id for ds in (bundle.train, bundle.val, bundle.test) for r in ds.records}
    assert len(ids) == 24 - 7  # 8 ids per split; 7 training ids have a problem
    assert not any(i in ids for i in ("ISIC_0000000", "ISIC_0000002", "ISIC_0000005", "ISIC_0000006"))
    assert len(bundle.skipped) == len(expected)


def test_truncation_detection_by_container():
    img = np.zeros((32, 32, 3), np.uint8)
    for ext, word in ((".jpg", "JPEG"), (".png", "PNG"), (".bmp", "BMP")):
        data = cv2.imencode(ext, img)[1].tobytes()
        assert truncation_reason(data) is None
        assert word in truncation_reason(data[: len(data) // 2])
    # cv2.imread fills a cut JPEG with grey and only prints a warning, so the check must not rely on
    # the decoder; it looks for the end-of-image marker after the last scan, wherever the cut is.
    rng = np.random.default_rng(0)
    data = cv2.imencode(".jpg", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))[1].tobytes()
    for cut in (0.3, 0.7, 0.999):
        assert "JPEG" in truncation_reason(data[: int(len(data) * cut)])
    assert truncation_reason(data + b"trailing junk") is None


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="shared ISIC 2017 sample not present")
def test_real_sample_copy_with_three_damaged_files(tmp_path):
    root = tmp_path / "sample"
    shutil.copytree(SAMPLE, root)
    images, masks = root / "ISIC-2017_Validation_Data", root / "ISIC-2017_Validation_Part1_GroundTruth"
    ids = sorted(p.stem for p in images.glob("*.jpg"))
    (masks / f"{ids[0]}_segmentation.png").unlink()
    _truncate(images / f"{ids[1]}.jpg", keep=0.7)
    m = cv2.imread(str(masks / f"{ids[2]}_segmentation.png"), cv2.IMREAD_GRAYSCALE)
    write(masks / f"{ids[2]}_segmentation.png", cv2.resize(m, (512, 384), interpolation=cv2.INTER_NEAREST))

    scan = scan_folder(root)
    problems = scan.problems + prepare(scan.records, 32, cache="none").problems
    assert sorted(p.path.name for p in problems) == sorted(
        [f"{ids[0]}.jpg", f"{ids[1]}.jpg", f"{ids[2]}_segmentation.png"])


def _mask_file(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr)
    return path


def test_16bit_masks_are_read_by_value_range(tmp_path):
    """A 16-bit PNG holding 0/255 was read as all zeros (IMREAD_GRAYSCALE shifts 16-bit data right
    by 8 bits); 0/65535 and colour 16-bit masks keep their lesion too."""
    from nas.data.files import read_mask

    m8 = np.zeros((12, 16), np.uint8)
    m8[3:9, 4:12] = 255
    cases = {
        "8bit.png": m8,
        "16bit_0_255.png": m8.astype(np.uint16),
        "16bit_0_65535.png": m8.astype(np.uint16) * 257,
        "16bit_colour.png": np.dstack([m8.astype(np.uint16)] * 3),
        "float.tiff": (m8 / 255.0).astype(np.float32),
    }
    for name, arr in cases.items():
        path = _mask_file(tmp_path / name, arr)
        assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).dtype == arr.dtype  # really written at that depth
        got = read_mask(path)
        assert got.dtype == np.uint8 and np.array_equal(got, m8), name
    grey = m8.astype(np.uint16) * 257
    grey[0, 0] = 128 * 257  # a grey level keeps its place on the 8-bit scale
    assert read_mask(_mask_file(tmp_path / "grey.png", grey))[0, 0] == 128


def test_16bit_mask_pairs_train_with_their_lesion(tmp_path):
    """The whole path (check, preprocess, lesion fraction) sees the same mask for 8- and 16-bit files."""
    fractions = {}
    for bits in (8, 16):
        root = make_layout(tmp_path / f"d{bits}", "folder", n=3)
        if bits == 16:
            for p in (root / "masks").iterdir():
                _mask_file(p, cv2.imread(str(p), cv2.IMREAD_GRAYSCALE).astype(np.uint16))
        prepared = prepare(scan_folder(root).records, 16, cache="none")
        assert not prepared.problems
        fractions[bits] = [i.lesion_fraction for i in prepared.infos]
    assert fractions[16] == fractions[8] and min(fractions[16]) > 0.05


def test_unusable_mask_samples_are_named(tmp_path):
    from nas.data.files import BadFile, read_mask

    with pytest.raises(BadFile, match=r"floating-point mask with values in \[-1, 1\]"):
        read_mask(_mask_file(tmp_path / "neg.tiff", np.array([[-1.0, 1.0]], np.float32)))


def test_a_set_of_empty_masks_stops_training(tmp_path):
    """Each empty mask is legal (a lesion-free image); every training mask empty is not."""
    from nas.errors import UserError

    root = make_layout(tmp_path, "folder", n=6)
    for p in (root / "masks").iterdir():
        write(p, np.zeros((30, 40), np.uint8))
    with pytest.raises(UserError, match=r"training split: every one of the \d+ masks is empty") as err:
        build_data(cfg_for(root), "search")
    assert err.value.exit_code == 1
    build_data(cfg_for(root), "evaluate")  # scoring a lesion-free set is allowed
