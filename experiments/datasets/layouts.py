"""The folder layouts of the public change-detection datasets: recognise one, then list its pairs.

Only file paths are looked at here (and the small `list/*.txt` files of LEVIR-CD); image bytes
are read later, one pair at a time, by `ingest`. `plan()` indexes the paths (a few bytes per
file), reports what cannot pair up, and `Plan.pairs()` yields the pairs lazily as `PairPaths`
(split, name, path of A, path of B, path of the label or None).

A path is `[split/]<role folder>/<file>` under any number of shared top folders (`LEVIR-CD/`,
`CDD/Real/subset/`), or for loose files `[split/]<name>_A.png`. Files are matched by their stem,
so a mask may have another extension than its images (DSIFN-CD's `.tif` test masks).

Paths are split as plain strings: `pathlib` interns every part it parses, which would keep every
file name of a large dataset in memory for the life of the process.
"""

import posixpath
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from experiments.errors import ServiceError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
SPLIT_FOLDERS = {
    "train": "train", "training": "train",
    "val": "val", "validation": "val", "valid": "val",
    "test": "test", "testing": "test",
}  # fmt: skip
LIST_FILES = {"list/train.txt": "train", "list/val.txt": "val", "list/validation.txt": "val", "list/test.txt": "test"}
LOOSE_SUFFIXES = {
    "_a": "a", "_before": "a", "-a": "a",
    "_b": "b", "_after": "b", "-b": "b",
    "_label": "label", "_mask": "label", "-label": "label",
}  # fmt: skip
EXTRA_FILES = {"categories.csv"}


@dataclass(frozen=True)
class Layout:
    """One dataset's folder names per role (lower case); the first label folder present is used."""

    key: str
    title: str
    shape: str
    a: tuple[str, ...] = ()
    b: tuple[str, ...] = ()
    label: tuple[str, ...] = ()
    lists: bool = False  # splits named by list/{train,val,test}.txt over flat folders
    loose: bool = False  # <name>_A / _B / _label files instead of role folders


# Auto-detection tries these in order; a layout whose label folder is present wins over one whose is not.
LAYOUTS = (
    Layout("dsifn", "DSIFN-CD", "[train|val|test/]t1/ t2/ mask/", ("t1",), ("t2",), ("mask",)),
    Layout("s2looking", "S2Looking", "[train|val|test/]Image1/ Image2/ label/", ("image1",), ("image2",), ("label",)),
    Layout("cdd", "CDD", "[train|val|test/]A/ B/ OUT/", ("a",), ("b",), ("out",)),
    Layout("levir-list", "LEVIR-CD with split lists", "A/ B/ label/ list/{train,val,test}.txt",
           ("a",), ("b",), ("label",), lists=True),
    Layout("levir", "LEVIR-CD", "[train|val|test/]A/ B/ label/", ("a",), ("b",), ("label",)),
    Layout("whu", "WHU-CD", "[train|val|test/]A/ B/ label/ or before/ after/ label/",
           ("a", "before"), ("b", "after"), ("label", "change label", "change_label", "change")),
    Layout("flat", "loose files", "<name>_A.png <name>_B.png [<name>_label.png]", loose=True),
)  # fmt: skip
BY_KEY = {layout.key: layout for layout in LAYOUTS}
CHOICES = ("auto", *BY_KEY)


def supported() -> str:
    return "; ".join(f"{layout.key} ({layout.title}: {layout.shape})" for layout in LAYOUTS)


@dataclass(frozen=True)
class PairPaths:
    split: str
    name: str
    a: str
    b: str
    label: str | None


@dataclass
class Plan:
    """What `plan()` found: the layout, how many pairs, and what cannot be paired (problems)."""

    layout: Layout
    count: int = 0
    split_counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    _index: dict = field(default_factory=dict, repr=False)  # (split, role) -> {stem: path}
    _splits: dict = field(default_factory=dict, repr=False)  # stem -> split from list files

    def pairs(self) -> Iterator[PairPaths]:
        """The complete pairs, split by split, in name order; files are not read."""
        for split in sorted({split for split, _ in self._index}):
            a, b, label = (self._index.get((split, role), {}) for role in ("a", "b", "label"))
            for stem in sorted(a.keys() & b.keys()):
                yield PairPaths(self._splits.get(stem, split), stem, a[stem], b[stem], label.get(stem))


# --------------------------------------------------------------------------- reading paths
def _parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part and part != "."]


def _stem_and_suffix(filename: str) -> tuple[str, str]:
    stem, suffix = posixpath.splitext(filename)
    return stem, suffix.lower()


def strip_top_folders(paths: list[str]) -> tuple[str, list[str]]:
    """Remove the folders every path shares (`LEVIR-CD/`), stopping at a split or role folder."""
    if not paths:
        return "", []
    stop = _role_names() | set(SPLIT_FOLDERS) | {"list"}
    prefix = ""
    for top in _parts(paths[0])[:-1]:
        candidate = f"{prefix}{top}/"
        if top.lower() in stop or not all(p.startswith(candidate) and "/" in p[len(candidate) :] for p in paths):
            break
        prefix = candidate
    return prefix.rstrip("/"), [p[len(prefix) :] for p in paths]


def _role_names() -> set[str]:
    return {name for layout in LAYOUTS for name in (*layout.a, *layout.b, *layout.label)}


def _split_and_rest(parts: list[str]) -> tuple[str, list[str]]:
    if len(parts) > 1 and parts[0].lower() in SPLIT_FOLDERS:
        return SPLIT_FOLDERS[parts[0].lower()], parts[1:]
    return "", parts


def _folders_found(paths: list[str]) -> set[str]:
    found = set()
    for path in paths:
        _, rest = _split_and_rest(_parts(path))
        if len(rest) == 2:
            found.add(rest[0].lower())
    return found


def _has_loose(paths: list[str]) -> bool:
    for path in paths:
        _, rest = _split_and_rest(_parts(path))
        if len(rest) == 1 and _loose_role(rest[0]) is not None:
            return True
    return False


def _loose_role(filename: str) -> tuple[str, str] | None:
    stem, extension = _stem_and_suffix(filename)
    if extension not in IMAGE_SUFFIXES:
        return None
    for suffix, role in LOOSE_SUFFIXES.items():
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            return role, stem[: -len(suffix)]
    return None


# --------------------------------------------------------------------------- choosing a layout
def detect(paths: list[str], key: str = "auto") -> Layout:
    """The layout `key` names, or the one the folders show; ServiceError naming what was found."""
    found = _folders_found(paths)
    has_lists = any(path in LIST_FILES for path in paths)

    def fits(layout: Layout) -> bool:
        if layout.loose:
            return _has_loose(paths)
        return bool(found & {*layout.a, *layout.b}) and (has_lists or not layout.lists)

    if key != "auto":
        if key not in BY_KEY:
            raise ServiceError(f"Unknown layout {key!r}; choose one of {', '.join(CHOICES)}.", field="layout")
        if fits(BY_KEY[key]):
            return BY_KEY[key]
        raise ServiceError(_unrecognised(paths, found, f"These files are not in the {BY_KEY[key].title} layout"))

    def rank(layout: Layout) -> tuple[bool, bool]:  # both image folders first, then a present label folder
        both = layout.loose or (bool(found & set(layout.a)) and bool(found & set(layout.b)))
        return not both, not (layout.loose or found & set(layout.label))

    candidates = sorted((layout for layout in LAYOUTS if fits(layout)), key=rank)
    if candidates:
        return candidates[0]
    raise ServiceError(_unrecognised(paths, found, "No supported dataset layout recognised"))


def _unrecognised(paths: list[str], found: set[str], headline: str) -> str:
    tops = sorted({_parts(p)[0] + ("/" if len(_parts(p)) > 1 else "") for p in paths})
    seen = ", ".join(tops[:12]) + (f" and {len(tops) - 12} more" if len(tops) > 12 else "") if tops else "no files"
    folders = f" (image folders: {', '.join(sorted(found))})" if found else ""
    return f"{headline}: found {seen}{folders}. Supported layouts: {supported()}."


# --------------------------------------------------------------------------- indexing
def plan(paths: list[str], *, read: Callable[[str], bytes], layout: str = "auto") -> Plan:
    """Index `paths` (relative, posix) for `layout`; `read` opens the small list files only."""
    chosen = detect(paths, layout)
    result = Plan(layout=chosen)
    ignored: dict[str, int] = defaultdict(int)
    for path in paths:
        placed = _place(path, chosen)
        if placed is None:
            if path not in LIST_FILES and path not in EXTRA_FILES and not path.lower().endswith((".md", ".txt")):
                ignored[posixpath.dirname(path) or "."] += 1
            continue
        split, role, stem = placed
        if role == "ignore":
            continue
        index = result._index.setdefault((split, role), {})
        if stem in index:
            where = f"split {split!r}" if split else "the unsplit files"
            result.problems.append(f"{stem}: two {role.upper() if role != 'label' else 'label'} files in {where} "
                                   f"({index[stem]} and {path}); names must be unique within a split.")  # fmt: skip
            continue
        index[stem] = path
    for folder, count in sorted(ignored.items()):
        shown = "the top folder" if folder == "." else f"{folder}/"
        result.warnings.append(f"{shown}: {count} file(s) not part of the {chosen.title} layout; ignored.")
    if chosen.lists:
        _read_lists(result, read, paths)
    _count(result)
    if not result.count:
        result.problems.append(f"No complete pairs found in the {chosen.title} layout ({chosen.shape}).")
    return result


def _place(path: str, layout: Layout) -> tuple[str, str, str] | None:
    """(split, role, name) of an image path, or None when it has no place in `layout`."""
    split, rest = _split_and_rest(_parts(path))
    if layout.loose:
        if len(rest) != 1:
            return None
        found = _loose_role(rest[0])
        return (split, *found) if found else None
    if len(rest) != 2 or _stem_and_suffix(rest[1])[1] not in IMAGE_SUFFIXES:
        return None
    folder, stem = rest[0].lower(), _stem_and_suffix(rest[1])[0]
    for role in ("a", "b", "label"):
        if folder in getattr(layout, role):
            return split, role, stem
    return None


def _read_lists(result: Plan, read: Callable[[str], bytes], paths: list[str]) -> None:
    listed: dict[str, str] = {}
    for path in sorted(p for p in paths if p in LIST_FILES):
        split = LIST_FILES[path]
        for line in read(path).decode(errors="replace").splitlines():
            stem = _stem_and_suffix(posixpath.basename(line.strip()))[0]
            if not stem:
                continue
            if stem in listed:
                result.problems.append(f"{stem}: listed twice ({listed[stem]} and {split}); a pair belongs to one "
                                       "split, and names must be unique within a split.")  # fmt: skip
                continue
            listed[stem] = split
    a_names = {stem for (_, role), index in result._index.items() if role == "a" for stem in index}
    missing = sorted(set(listed) - a_names)
    if missing:
        result.problems.append(f"The split lists name {len(missing)} pair(s) with no A image: {', '.join(missing[:10])}"
                               f"{' …' if len(missing) > 10 else ''}.")  # fmt: skip
    unlisted = len(a_names - set(listed))
    if unlisted:
        result.warnings.append(f"{unlisted} pair(s) are in no split list; they are kept without a split.")
    result._splits = listed


def _count(result: Plan) -> None:
    counts: dict[str, int] = defaultdict(int)
    for split in sorted({split for split, _ in result._index}):
        a, b = (result._index.get((split, role), {}) for role in ("a", "b"))
        for stem in sorted(a.keys() ^ b.keys()):
            where = f" in split {split!r}" if split else ""
            result.problems.append(f"{stem}: has no {'B' if stem in a else 'A'} image to pair with{where}.")
        for stem in a.keys() & b.keys():
            counts[result._splits.get(stem, split)] += 1
        labels = result._index.get((split, "label"), {})
        unpaired = sorted(labels.keys() - (a.keys() | b.keys()))
        if unpaired:
            result.warnings.append(f"{len(unpaired)} label(s){' in split ' + repr(split) if split else ''} have no "
                                   f"images: {', '.join(unpaired[:5])}{' …' if len(unpaired) > 5 else ''}; ignored.")  # fmt: skip
    result.split_counts = dict(counts)
    result.count = sum(counts.values())
