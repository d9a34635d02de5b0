"""Find the image/mask pairs of a dataset folder, in each public dataset's own folder and file names.

A layout only lists files and pairs them by id; it never decodes an image (that is `validate`'s
job), so listing even HAM10000's 10,015 pairs is instant. Files that cannot be paired are
returned as problems, never dropped silently: an image without a mask, a mask without an image,
two files claiming the same id.

Supported: ISIC 2016/2017/2018 Task 1 (with their official train/val/test folders), HAM10000
with the Tschandl et al. lesion masks, PH2, and a generic `images/` + `masks/` folder (optionally
split into `train/`, `val/`, `test/`).
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from nas.data.records import Problem, Record
from nas.errors import UserError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
MASK_EXTS = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")
GENERIC_DIRS = ("images", "masks")  # never enough on their own to recognise a named dataset


@dataclass
class Scan:
    """What a layout found: pairs (`orig_size` not yet known), pairing problems, notes to warn,
    and the dataset's own groups file (`nas.data.groups`) when it has one."""

    layout: str
    base: Path
    records: list[Record] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    groups_file: Optional[Path] = None


# Directory listings and is_dir answers memoised for the duration of one `scan_folder` call, during
# which every layout's match() (and then scan()) looks for its folders under the same root.
_memo: ContextVar[Optional[dict[tuple[str, Path], Any]]] = ContextVar("nas_data_layouts_memo", default=None)


@contextmanager
def _memoised_listings() -> Iterator[None]:
    token = _memo.set({})
    try:
        yield
    finally:
        _memo.reset(token)


def _memoised(kind: str, d: Path, compute: Callable[[Path], Any]) -> Any:
    memo = _memo.get()
    if memo is None:
        return compute(d)
    key = (kind, d)
    if key not in memo:
        memo[key] = compute(d)
    return memo[key]


def _list_subdirs(d: Path) -> list[Path]:
    try:
        with os.scandir(d) as it:
            return sorted(Path(e.path) for e in it if e.is_dir())
    except OSError:
        return []


def _subdirs(d: Path) -> list[Path]:
    return _memoised("subdirs", d, _list_subdirs)


def _is_dir(d: Path) -> bool:
    return _memoised("is_dir", d, Path.is_dir)


def _find_dir(root: Path, name: str, depth: int = 2) -> Optional[Path]:
    """`root/name`, or `name` up to `depth` levels below root (archives often add a folder)."""
    level = [root]
    for step in range(depth + 1):
        for d in level:
            found = d / name
            if _is_dir(found):
                nested = found / name  # unzipping "X.zip" into "X/" gives X/X/
                return nested if _is_dir(nested) else found
        if step < depth:
            level = [c for d in level for c in _subdirs(d)]
    return None


def _add_pair(scan: Scan, seen: dict[str, Path], rec: Record) -> None:
    if rec.id in seen:
        scan.problems.append(Problem(rec.image_path, f"duplicate id {rec.id} (also {seen[rec.id]}); "
                                                     "remove one of the two"))
        return
    seen[rec.id] = rec.image_path
    scan.records.append(rec)


def _pair_up(scan: Scan, seen: dict[str, Path], subset: Optional[str], images: dict[str, Path],
             masks: dict[str, Path], no_mask: Callable[[str], str], no_image: Callable[[str], str]) -> None:
    """Pair `images` and `masks` by id, in their dicts' order: pairs, then problems worded by
    `no_mask(id)` for each image without a mask and `no_image(id)` for each mask without an image."""
    for id_, img in images.items():
        if id_ in masks:
            _add_pair(scan, seen, Record(id_, img, masks[id_], subset=subset))
        else:
            scan.problems.append(Problem(img, no_mask(id_)))
    for id_, msk in masks.items():
        if id_ not in images:
            scan.problems.append(Problem(msk, no_image(id_)))


# ----------------------------------------------------------------------------- ISIC-style layouts
@dataclass(frozen=True)
class SubsetDirs:
    """Folder names (alternatives, first found wins for masks; all are merged for images)."""

    subset: Optional[str]
    image_dirs: tuple[str, ...]
    mask_dirs: tuple[str, ...]


@dataclass(frozen=True)
class PairedFolders:
    """Images in one folder, masks `<id><mask_suffix>` in a sibling folder (ISIC, HAM10000)."""

    name: str
    title: str
    subsets: tuple[SubsetDirs, ...]
    image_re: str = r"^(ISIC_\d+)\.(jpe?g|png)$"
    mask_re: str = r"^(ISIC_\d+)_segmentation\.png$"
    mask_example: str = "{id}_segmentation.png"
    groups_file: Optional[str] = None  # the dataset's image -> lesion table, used when present at its root

    @property
    def expected(self) -> str:
        first = self.subsets[0]
        return (f"{first.image_dirs[0]}/ISIC_0000000.jpg + {first.mask_dirs[0]}/"
                + self.mask_example.format(id="ISIC_0000000"))

    def match(self, root: Path) -> Optional[Path]:
        """Any of this dataset's own folder names (not a generic one like `images/`) under root."""
        names = [n for s in self.subsets for n in s.image_dirs + s.mask_dirs if n not in GENERIC_DIRS]
        return root if any(_find_dir(root, n) is not None for n in names) else None

    def scan(self, base: Path) -> Scan:
        scan = Scan(self.name, base)
        if self.groups_file is not None and (base / self.groups_file).is_file():
            scan.groups_file = base / self.groups_file
        seen: dict[str, Path] = {}
        image_re, mask_re = re.compile(self.image_re, re.I), re.compile(self.mask_re, re.I)
        usable = 0
        for s in self.subsets:
            image_dirs = [d for d in (_find_dir(base, n) for n in s.image_dirs) if d is not None]
            mask_dir = next((d for d in (_find_dir(base, n) for n in s.mask_dirs) if d is not None), None)
            if not image_dirs and mask_dir is None:
                continue
            if mask_dir is None:
                n = sum(1 for d in image_dirs for p in d.iterdir() if image_re.match(p.name))
                scan.notes.append(f"{image_dirs[0]}: no ground-truth folder {s.mask_dirs[0]}/ next to it; "
                                  f"its {n} images are not used")
                continue
            if not image_dirs:
                scan.notes.append(f"{mask_dir}: no image folder {s.image_dirs[0]}/ next to it; its masks are not used")
                continue
            usable += 1
            images: dict[str, Path] = {}
            for d in image_dirs:
                for p in sorted(d.iterdir()):
                    m = image_re.match(p.name)
                    if m:
                        if m.group(1) in images:
                            scan.problems.append(Problem(p, f"duplicate id {m.group(1)} (also {images[m.group(1)]})"))
                        else:
                            images[m.group(1)] = p
            masks = {m.group(1): p for p in sorted(mask_dir.iterdir()) if (m := mask_re.match(p.name))}
            _pair_up(scan, seen, s.subset, dict(sorted(images.items())), dict(sorted(masks.items())),
                     lambda id_: f"image without mask (expected {mask_dir / self.mask_example.format(id=id_)})",
                     lambda id_: f"mask without image (expected {id_}.jpg in {image_dirs[0]})")
        if usable == 0 and not scan.problems:
            raise UserError(f"{base}: found {self.title} folders but no image folder with its ground-truth "
                            f"folder; expected {self.expected}")
        return scan


ISIC2016 = PairedFolders(
    "isic2016", "ISIC 2016 Part 1",
    (SubsetDirs("train", ("ISBI2016_ISIC_Part1_Training_Data",), ("ISBI2016_ISIC_Part1_Training_GroundTruth",)),
     SubsetDirs("test", ("ISBI2016_ISIC_Part1_Test_Data",), ("ISBI2016_ISIC_Part1_Test_GroundTruth",))),
    mask_example="{id}_Segmentation.png")
ISIC2017 = PairedFolders(
    "isic2017", "ISIC 2017 Part 1",
    (SubsetDirs("train", ("ISIC-2017_Training_Data",), ("ISIC-2017_Training_Part1_GroundTruth",)),
     SubsetDirs("val", ("ISIC-2017_Validation_Data",), ("ISIC-2017_Validation_Part1_GroundTruth",)),
     SubsetDirs("test", ("ISIC-2017_Test_v2_Data", "ISIC-2017_Test_Data"),
                ("ISIC-2017_Test_v2_Part1_GroundTruth", "ISIC-2017_Test_Part1_GroundTruth"))))
ISIC2018 = PairedFolders(
    "isic2018", "ISIC 2018 Task 1",
    (SubsetDirs("train", ("ISIC2018_Task1-2_Training_Input",), ("ISIC2018_Task1_Training_GroundTruth",)),
     SubsetDirs("val", ("ISIC2018_Task1-2_Validation_Input",), ("ISIC2018_Task1_Validation_GroundTruth",)),
     SubsetDirs("test", ("ISIC2018_Task1-2_Test_Input",), ("ISIC2018_Task1_Test_GroundTruth",))))
HAM10000 = PairedFolders(
    "ham10000", "HAM10000 (with lesion masks)",
    (SubsetDirs(None, ("HAM10000_images_part_1", "HAM10000_images_part_2", "HAM10000_images_part1",
                       "HAM10000_images_part2", "HAM10000_images", "images"),
                ("HAM10000_segmentations_lesion_tschandl",)),),
    groups_file="HAM10000_metadata.csv")


# ----------------------------------------------------------------------------- PH2
class PH2:
    """`PH2 Dataset images/IMD002/IMD002_Dermoscopic_Image/IMD002.bmp` + `IMD002_lesion/IMD002_lesion.bmp`."""

    name = "ph2"
    title = "PH2"
    expected = "PH2 Dataset images/IMD002/IMD002_Dermoscopic_Image/IMD002.bmp + IMD002/IMD002_lesion/IMD002_lesion.bmp"
    case_re = re.compile(r"^IMD\d+$")

    def _is_base(self, d: Path) -> bool:
        return any(p.is_dir() and self.case_re.match(p.name) and (p / f"{p.name}_Dermoscopic_Image").is_dir()
                   for p in d.iterdir())

    def match(self, root: Path) -> Optional[Path]:
        """The folder itself, its `PH2 Dataset images/` child, or that one level deeper."""
        if self._is_base(root):
            return root
        d = _find_dir(root, "PH2 Dataset images", depth=1)
        return d if d is not None and self._is_base(d) else None

    def scan(self, base: Path) -> Scan:
        scan = Scan(self.name, base)
        seen: dict[str, Path] = {}
        for case in sorted(p for p in base.iterdir() if p.is_dir() and self.case_re.match(p.name)):
            id_ = case.name
            img = case / f"{id_}_Dermoscopic_Image" / f"{id_}.bmp"
            msk = case / f"{id_}_lesion" / f"{id_}_lesion.bmp"
            if img.is_file() and msk.is_file():
                _add_pair(scan, seen, Record(id_, img, msk))
            elif img.is_file():
                scan.problems.append(Problem(img, f"image without mask (expected {msk})"))
            elif msk.is_file():
                scan.problems.append(Problem(msk, f"mask without image (expected {img})"))
            else:
                scan.problems.append(Problem(case, f"case folder without image or mask (expected {img})"))
        return scan


# ----------------------------------------------------------------------------- generic folder
class Folder:
    """`images/<stem>.<ext>` + `masks/<stem>[_mask|_segmentation].<ext>`, or the same under train/val/test."""

    name = "folder"
    title = "generic images/ + masks/ folder"
    expected = "images/<name>.jpg + masks/<name>.png (or <name>_mask.png, <name>_segmentation.png)"
    subset_dirs = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test",)}
    mask_suffix_re = re.compile(r"(_mask|_segmentation)$", re.I)

    @staticmethod
    def _has_pair_dirs(d: Path) -> bool:
        return (d / "images").is_dir() and (d / "masks").is_dir()

    def _parts(self, base: Path) -> list[tuple[Optional[str], Path]]:
        if self._has_pair_dirs(base):
            return [(None, base)]
        parts = []
        for subset, names in self.subset_dirs.items():
            for n in names:
                if self._has_pair_dirs(base / n):
                    parts.append((subset, base / n))
                    break
        return parts

    def match(self, root: Path) -> Optional[Path]:
        return root if self._parts(root) else None

    def scan(self, base: Path) -> Scan:
        scan = Scan(self.name, base)
        seen: dict[str, Path] = {}
        for subset, d in self._parts(base):
            images: dict[str, Path] = {}
            for p in sorted((d / "images").iterdir()):
                if p.suffix.lower() in IMAGE_EXTS:
                    if p.stem in images:
                        scan.problems.append(Problem(p, f"two images named {p.stem} (also {images[p.stem]})"))
                    else:
                        images[p.stem] = p
            masks: dict[str, Path] = {}
            for p in sorted((d / "masks").iterdir()):
                if p.suffix.lower() in MASK_EXTS:
                    stem = p.stem if p.stem in images else self.mask_suffix_re.sub("", p.stem)
                    if stem in masks:
                        scan.problems.append(Problem(p, f"two masks for {stem} (also {masks[stem]})"))
                    else:
                        masks[stem] = p
            _pair_up(scan, seen, subset, images, masks,
                     lambda stem: (f"image without mask (expected {d / 'masks' / stem}.png, "
                                   f"{stem}_mask.png or {stem}_segmentation.png)"),
                     lambda stem: f"mask without image (expected {d / 'images' / stem}.jpg or .png)")
        return scan


# ----------------------------------------------------------------------------- detection
LAYOUTS = {lay.name: lay for lay in (ISIC2017, ISIC2016, ISIC2018, HAM10000, PH2(), Folder())}


def layout_names() -> list[str]:
    return list(LAYOUTS)


def scan_folder(root: str | Path, layout: str = "auto") -> Scan:
    """List the pairs under `root` in the given layout, or the first layout that matches.

    Raises UserError when the folder is missing, no layout matches, or a forced layout does not.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"{root}: dataset folder not found")
    if layout not in ("auto", *LAYOUTS):
        raise UserError(f"data.layout: unknown layout {layout!r} (known: auto, {', '.join(LAYOUTS)})")
    with _memoised_listings():
        if layout != "auto":
            lay = LAYOUTS[layout]
            base = lay.match(root)
            if base is None:
                raise UserError(f"{root}: does not look like {lay.title} (data.layout={layout}); "
                                f"expected {lay.expected}")
            return lay.scan(base)
        for lay in LAYOUTS.values():
            base = lay.match(root)
            if base is not None:
                return lay.scan(base)
    known = "; ".join(f"{lay.name}: {lay.expected}" for lay in LAYOUTS.values())
    raise UserError(f"{root}: no known dataset layout found; expected one of {known}")
