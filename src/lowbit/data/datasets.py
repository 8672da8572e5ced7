"""Data sets: the samples fed to a model for calibration, validation and evaluation.

    specs = input_specs(load_model("model.onnx"))
    data = open_dataset("calib.npz", specs)           # or a folder, or a single-input .npy
    len(data)                                         # known without loading any sample
    for sample in data.take(100):                     # {"input": (1, 3, 224, 224) float32}
        ...
    ref = data.stacked(4)                             # {"input": (4, 3, 224, 224)}
    images = open_dataset("val/", specs, image_options=ImageOptions(mean=(127.5,),
                                                                    scale=(1 / 127.5,)))

Kinds, chosen by what ``path`` is:

- ``.npz``: one array per model input (key = input name, first axis = samples).
  A sample is ``arr[i:i+1]`` (batch-1 slice); an array whose rank is one more than
  the input's holds whole samples, ``arr[i]``. Keys that are not inputs are ignored.
- ``.npy``: the same, for a single-input model.
- a folder of ``.npz``/``.npy`` files: one sample per file, sorted by name, each
  with the model's exact input shapes (``.npy`` only for a single-input model).
- a folder of images (searched recursively, sorted; a folder per class works):
  single 4-D input, preprocessed by :func:`lowbit.data.images.load_image`.

Samples come one at a time (nothing is loaded whole, except a compressed .npz),
held to ONNX Runtime's rules for a feed and no stricter (lowbit.spec.TensorSpec.feed):
a ``None`` or named dimension matches anything, a 1-element array given for a scalar
input becomes that scalar (said once at INFO), and data of another dtype is converted
where no value changes (int64 ids for an int32 input, float64 for float32). A scalar
input's samples are an array with one value per sample. ``input_shapes`` replaces the
model's shapes (for dynamic H/W). NaN/Inf is the consumer's check: :func:`check_finite`.
"""

from __future__ import annotations

import logging
import math
import struct
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from lowbit.arguments import format_size, memory_refusal
from lowbit.atomic import atomic_path
from lowbit.data.images import ImageOptions, is_image_file, load_image
from lowbit.errors import DatasetError, UsageError
from lowbit.spec import TensorSpec, named_dim_conflict

log = logging.getLogger(__name__)

Sample = dict[str, np.ndarray]
_NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float


class Dataset:
    """Base of every data set kind: a sized, lazily read sequence of samples."""

    def __init__(self, source: Path, specs: Sequence[TensorSpec]) -> None:
        self.source = source
        self.specs = list(specs)  # with input_shapes applied
        self.names = [spec.name for spec in self.specs]
        self._told: set[str] = set()  # inputs whose samples' reshaping was logged
        self._dims_told = False          # whether a named dim given two sizes was logged

    def _feed(self, spec: TensorSpec, array: np.ndarray, where: str) -> np.ndarray:
        """``array`` as fed for ``spec`` (lowbit.spec.TensorSpec.feed); a reshape to a
        declared scalar is said once per input."""
        fed = spec.feed(array, where)
        if fed.shape != array.shape and spec.name not in self._told:
            self._told.add(spec.name)
            log.info("input '%s' is a scalar: its 1-element samples (%s in %s) are fed as "
                     "scalars", spec.name, _shape_text(array.shape), self.source)
        elif not spec.shape and fed.size != 1 and spec.name not in self._told:
            self._told.add(spec.name)
            log.warning("input '%s' is declared a scalar, but %s has shape %s; fed as it is "
                        "(ONNX Runtime does not check a scalar input's shape)", spec.name,
                        where, _shape_text(array.shape))
        return fed

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def stored_dtypes(self) -> dict[str, np.dtype]:
        """Each input's dtype as the data set stores it (before conversion to the model's),
        where it is known without reading a sample."""
        return {}

    def _load(self, index: int) -> Sample:
        """Sample ``index``: batch-1 shapes, spec dtypes, shape-checked."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[Sample]:
        return self.take(None)

    def take(self, n: int | None) -> Iterator[Sample]:
        """The first ``n`` samples (all if None or more than there are), one at a time."""
        if n is not None and n < 0:
            raise UsageError(f"number of samples must be >= 0, got {n}")
        count = len(self) if n is None else min(n, len(self))
        return (self._sample(i) for i in range(count))

    def take_range(self, start: int, stop: int) -> Iterator[Sample]:
        """Samples ``start`` .. ``stop`` - 1 (cut to the data set), one at a time: what a
        shard of a parallel stage reads (lowbit.parallel)."""
        return (self._sample(i) for i in range(max(start, 0), min(stop, len(self))))

    def _sample(self, index: int) -> Sample:
        sample = self._load(index)
        if not self._dims_told:
            conflict = named_dim_conflict({spec.name: spec.shape for spec in self.specs}, sample)
            if conflict:
                self._dims_told = True
                log.warning("sample %d in %s: %s; ONNX Runtime takes such feeds, but plans "
                            "memory as if a named dim had one size, so a model may fail to run "
                            "on them", index, self.source, conflict)
        return sample

    def stacked(self, n: int | None = None) -> Sample:
        """The first ``n`` samples (all if None) concatenated along axis 0, per input (a
        scalar input's samples stacked: one value per sample)."""
        samples = list(self.take(n))
        if not samples:
            raise UsageError(f"cannot stack 0 samples from {self.source}")
        return {name: np.concatenate(parts, axis=0) if parts[0].ndim else np.stack(parts)
                for name in self.names for parts in [[s[name] for s in samples]]}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.source)!r}, {len(self)} samples)"


# --------------------------------------------------------------------------- npz / npy


@dataclass(frozen=True)
class _ArrayHeader:
    """Shape and dtype of an .npy (or .npz member) read from its header, without the data."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    data_offset: int  # bytes from the start of the .npy stream to the data

    @property
    def nbytes(self) -> int:
        """Bytes of the data the header announces (a Python int: no overflow)."""
        return math.prod(self.shape) * self.dtype.itemsize

    def check_holds(self, stored: int, where: str) -> None:
        """A header announcing more data than the ``stored`` bytes of its stream hold (10¹²
        samples in a 300 KB file) is a corrupt or truncated file, refused before anything
        is allocated for it."""
        if self.data_offset + self.nbytes > stored:
            raise DatasetError(f"{where}: its header announces shape {_shape_text(self.shape)} "
                               f"{self.dtype} ({format_size(self.nbytes)}), but the file holds "
                               f"{format_size(max(stored - self.data_offset, 0))} of data: it "
                               "is truncated or corrupt")


class _LazyArray:
    """One stored array: memory-mapped where the bytes lie uncompressed on disk, else loaded once."""

    def __init__(self, path: Path, member: str | None, header: _ArrayHeader,
                 file_offset: int | None) -> None:
        self.path = path
        self.member = member  # name inside the .npz, None for a bare .npy
        self.header = header
        self._file_offset = file_offset  # where the .npy stream starts in the file, if stored
        self._array: np.ndarray | None = None
        self._stream: _MemberStream | None = None  # a compressed member, read in order

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_stream": None}  # an open zip member does not pickle

    @classmethod
    def in_memory(cls, array: np.ndarray, where: Path) -> _LazyArray:
        array = np.asarray(array)
        header = _ArrayHeader(array.shape, array.dtype, fortran=False, data_offset=0)
        lazy = cls(where, None, header, file_offset=None)
        lazy._array = array
        return lazy

    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = self._mmap() if self._file_offset is not None else None
            if self._array is None:
                self._array = self._read()
        return self._array

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop of the first axis. Uncompressed C-order data is read with a
        seek and a read, so the process never holds more than those rows (a memory map
        would keep every page it touched resident)."""
        header = self.header
        if self._array is not None or header.fortran or header.dtype.hasobject \
                or 0 in header.shape or not header.shape:
            return self.array()[start:stop]
        row_bytes = math.prod(header.shape[1:]) * header.dtype.itemsize
        if self._file_offset is None:  # compressed: decompress in order, never all of it
            if self._stream is None:
                assert self.member is not None
                self._stream = _MemberStream(self.path, self.member)
            data = self._stream.read(header.data_offset + start * row_bytes,
                                     (stop - start) * row_bytes)
        else:
            with open(self.path, "rb") as stream:
                stream.seek(self._file_offset + header.data_offset + start * row_bytes)
                data = stream.read((stop - start) * row_bytes)
        if len(data) != (stop - start) * row_bytes:
            raise DatasetError(f"{self.path} is truncated: array '{self.member}' ends before "
                               f"sample {start}")
        return np.frombuffer(data, dtype=header.dtype).reshape((stop - start, *header.shape[1:]))

    def _mmap(self) -> np.ndarray | None:
        header = self.header
        if 0 in header.shape or header.dtype.hasobject:
            return None
        assert self._file_offset is not None
        try:
            return np.memmap(self.path, dtype=header.dtype, mode="r", shape=header.shape,
                             order="F" if header.fortran else "C",
                             offset=self._file_offset + header.data_offset)
        except (OSError, ValueError) as err:
            log.debug("cannot memory-map %s:%s (%s); reading it", self.path, self.member, err)
            return None

    def _read(self) -> np.ndarray:
        where = self.path if self.member is None else f"{self.path}:{self.member}"
        refusal = memory_refusal(self.header.nbytes, f"reading array {where} whole")
        if refusal is not None:
            raise DatasetError(refusal)
        try:
            if self.member is None:
                return np.load(self.path, allow_pickle=False)
            with zipfile.ZipFile(self.path) as archive, archive.open(self.member) as stream:
                return np.lib.format.read_array(stream, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise DatasetError(f"cannot read array {where}: {err}") from err


class _MemberStream:
    """One compressed .npz member, open and decompressed in order: reading sample i+1
    after sample i costs one row, and memory never holds more than the rows asked for
    (zipfile seeks forward by reading in bounded chunks; going back starts over)."""

    def __init__(self, path: Path, member: str) -> None:
        self.path, self.member = path, member
        self._archive: zipfile.ZipFile | None = None
        self._stream: IO[bytes] | None = None
        self._position = 0

    def read(self, offset: int, size: int) -> bytes:
        try:
            if self._stream is None or offset < self._position:
                self.close()
                self._archive = zipfile.ZipFile(self.path)
                self._stream = self._archive.open(self.member)
                self._position = 0
            if offset > self._position:
                self._stream.seek(offset)
            data = self._stream.read(size)
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            self.close()
            raise DatasetError(f"cannot read array {self.path}:{self.member}: {err}") from err
        self._position = offset + len(data)
        return data

    def close(self) -> None:
        for handle in (self._stream, self._archive):
            if handle is not None:
                handle.close()
        self._stream = self._archive = None

    def __del__(self) -> None:
        self.close()


def _read_header(stream: IO[bytes], where: str) -> _ArrayHeader:
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            # Version 3 only exists for structured dtypes with non-latin1 names.
            raise DatasetError(f"{where} holds a non-numeric array (.npy format {version})")
    except ValueError as err:
        raise DatasetError(f"{where} is not a readable .npy array: {err}") from err
    return _ArrayHeader(tuple(int(d) for d in shape), np.dtype(dtype), bool(fortran),
                        stream.tell())


def _open_npy(path: Path) -> _LazyArray:
    try:
        with path.open("rb") as stream:
            header = _read_header(stream, str(path))
    except OSError as err:
        raise DatasetError(f"cannot read {path}: {err}") from err
    header.check_holds(path.stat().st_size, str(path))
    return _LazyArray(path, None, header, file_offset=0)


def _open_npz(path: Path, specs: Sequence[TensorSpec]) -> dict[str, _LazyArray]:
    """The arrays for the inputs in ``specs``, from their headers; other keys are not read."""
    arrays: dict[str, _LazyArray] = {}
    try:
        with zipfile.ZipFile(path) as archive, path.open("rb") as raw:
            members = {info.filename[: -len(".npy")]: info for info in archive.infolist()
                       if info.filename.endswith(".npy")}
            _check_names_present(members, specs, path)
            for spec in specs:
                arrays[spec.name] = _open_member(archive, raw, members[spec.name], path,
                                                 f"input '{spec.name}' in {path}")
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"{path} is not a readable .npz archive: {err}") from err
    return arrays


def _open_member(archive: zipfile.ZipFile, raw: IO[bytes], info: zipfile.ZipInfo, path: Path,
                 where: str) -> _LazyArray:
    with archive.open(info) as stream:
        header = _read_header(stream, where)
    header.check_holds(info.file_size, where)
    offset = None
    if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1:
        offset = _member_data_offset(raw, info)
    return _LazyArray(path, info.filename, header, offset)


def npz_keys(path: str | Path) -> list[str]:
    """The array names in an .npz, read from its directory (no data is read)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise DatasetError(f"{path} is not a readable .npz archive: {err}") from err


def read_array(path: str | Path, key: str | None = None) -> np.ndarray:
    """One whole array, ``key`` of an .npz or (None) an .npy file (labels, targets,
    reference outputs): its header is held to the bytes stored and to the memory there
    is before the data is read, so a corrupt header is one DatasetError."""
    path = Path(path)
    if key is None:
        return np.array(_open_npy(path).array())
    try:
        with zipfile.ZipFile(path) as archive, path.open("rb") as raw:
            info = archive.getinfo(f"{key}.npy")
            lazy = _open_member(archive, raw, info, path, f"array '{key}' in {path}")
    except KeyError:
        raise DatasetError(f"{path} has no array '{key}' (keys: "
                           f"{', '.join(npz_keys(path)) or 'none'})") from None
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"{path} is not a readable .npz archive: {err}") from err
    return np.array(lazy.array())


def _member_data_offset(raw: IO[bytes], info: zipfile.ZipInfo) -> int | None:
    """Where a stored (uncompressed) zip member's bytes start in the archive file."""
    raw.seek(info.header_offset)
    local = raw.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        return None
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    return info.header_offset + 30 + name_len + extra_len


class ArrayDataset(Dataset):
    """An .npz (one array per input) or, for a single-input model, an .npy."""

    def __init__(self, source: Path, specs: Sequence[TensorSpec],
                 arrays: Mapping[str, _LazyArray]) -> None:
        super().__init__(source, specs)
        self._arrays = {spec.name: arrays[spec.name] for spec in self.specs}
        # An array of the input's rank holds batch-1 slices; one rank more holds whole samples.
        self._whole = {spec.name: len(arrays[spec.name].header.shape) == len(spec.shape) + 1
                       for spec in self.specs}
        self._count = self._check_counts()
        for spec in self.specs:
            self._check_array(spec)

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], specs: Sequence[TensorSpec],
                    source: str = "<arrays>") -> ArrayDataset:
        """A data set over arrays already in memory, laid out and checked like an .npz."""
        where = Path(source)
        _check_names_present(arrays, specs, where)
        return cls(where, specs, {name: _LazyArray.in_memory(np.asarray(array), where)
                                  for name, array in arrays.items()})

    def __len__(self) -> int:
        return self._count

    @property
    def stored_dtypes(self) -> dict[str, np.dtype]:
        return {name: lazy.header.dtype for name, lazy in self._arrays.items()}

    def _load(self, index: int) -> Sample:
        sample = {}
        for spec in self.specs:
            part = self._arrays[spec.name].rows(index, index + 1)
            part = part[0] if self._whole[spec.name] else part
            sample[spec.name] = self._feed(spec, part, f"sample {index} in {self.source}")
        return sample

    def _check_counts(self) -> int:
        counts = {name: self._arrays[name].header.shape[:1] for name in self.names}
        for name, count in counts.items():
            if not count:
                raise DatasetError(f"array '{name}' in {self.source} is a scalar; its first axis "
                                   f"must count the samples (one value per sample for a scalar "
                                   f"input)")
        distinct = {count[0] for count in counts.values()}
        if len(distinct) > 1:
            listed = ", ".join(f"'{name}': {count[0]}" for name, count in counts.items())
            raise DatasetError(f"arrays in {self.source} hold different numbers of samples "
                               f"({listed}); the first axis must count the samples")
        samples = distinct.pop()
        if samples == 0:
            raise DatasetError(f"data set {self.source} is empty: 0 samples")
        return samples

    def _check_array(self, spec: TensorSpec) -> None:
        header = self._arrays[spec.name].header
        _check_dtype(header.dtype, spec, f"{self.source}")
        shape = header.shape[1:] if self._whole[spec.name] else (1, *header.shape[1:])
        if spec.feed_shape(shape) is None:
            raise DatasetError(f"input '{spec.name}' expects {spec.shape_text()}, sample 0 in "
                               f"{self.source} has {_shape_text(shape)} (array shape "
                               f"{_shape_text(header.shape)}; its first axis counts the samples)")


# --------------------------------------------------------------------------- folders


class SampleFolderDataset(Dataset):
    """A folder of .npz/.npy files, one sample each, with the model's exact input shapes."""

    def __init__(self, source: Path, specs: Sequence[TensorSpec], files: Sequence[Path]) -> None:
        super().__init__(source, specs)
        self.paths = list(files)
        npy = [p for p in self.paths if p.suffix.lower() == ".npy"]
        if npy and len(self.specs) != 1:
            raise DatasetError(f"{npy[0]} is an .npy file, but the model has {len(self.specs)} "
                               f"inputs ({', '.join(self.names)}); use one .npz per sample with "
                               f"one array per input")

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index: int) -> Sample:
        path = self.paths[index]
        if path.suffix.lower() == ".npy":
            arrays = {self.names[0]: _open_npy(path)}
        else:
            arrays = _open_npz(path, self.specs)
        sample = {}
        for spec in self.specs:
            lazy = arrays[spec.name]
            _check_dtype(lazy.header.dtype, spec, str(path))
            if spec.feed_shape(lazy.header.shape) is None:  # before the data is read
                raise DatasetError(f"input '{spec.name}' expects {spec.shape_text()}, sample "
                                   f"{index} in {path} has {_shape_text(lazy.header.shape)}")
            sample[spec.name] = self._feed(spec, np.array(lazy.array()),
                                           f"sample {index} in {path}")
        return sample


class ImageFolderDataset(Dataset):
    """A folder of image files (recursive, sorted) for a model with one 4-D image input."""

    def __init__(self, source: Path, specs: Sequence[TensorSpec], files: Sequence[Path],
                 options: ImageOptions) -> None:
        super().__init__(source, specs)
        self.paths = list(files)
        self.options = options
        self.height, self.width = self._geometry()

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index: int) -> Sample:
        spec = self.specs[0]
        values = load_image(self.paths[index], self.options, self.height, self.width)
        return {spec.name: values.astype(spec.dtype, copy=False)}

    def _geometry(self) -> tuple[int, int]:
        if len(self.specs) != 1:
            raise DatasetError(f"an image folder ({self.source}) feeds one input, but the model "
                               f"has {len(self.specs)} ({', '.join(self.names)}); use an .npz")
        spec = self.specs[0]
        if len(spec.shape) != 4:
            raise DatasetError(f"an image folder ({self.source}) needs a 4-D image input, but "
                               f"input '{spec.name}' has shape {spec.shape_text()}")
        self.options = self.options.for_shape(spec.shape)  # resolves layout "auto"
        layout = self.options.layout
        batch, c, h, w = spec.shape if layout == "nchw" else (spec.shape[i] for i in (0, 3, 1, 2))
        where = f"input '{spec.name}' {spec.shape_text()} ({layout})"
        if isinstance(batch, int) and batch != 1:
            raise DatasetError(f"{where} has batch {batch}; image folders give batch-1 samples")
        if not isinstance(h, int) or not isinstance(w, int):
            raise DatasetError(f"{where} has a dynamic height or width; give its shape with "
                               f"{{input_shapes}} to read images from {self.source}")
        channels = self.options.channels
        if isinstance(c, int) and c != channels:
            raise DatasetError(f"{where} has {c} channels, but pixel_format "
                               f"'{self.options.pixel_format}' gives {channels}; check pixel_format"
                               f" and layout")
        self.options.check_fits(h, w, channels, where)
        return h, w


# --------------------------------------------------------------------------- open


def open_dataset(path: str | Path, specs: Sequence[TensorSpec], *,
                 image_options: ImageOptions | None = None,
                 input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> Dataset:
    """Open the data set at ``path`` for a model with inputs ``specs``; checks what it can now."""
    path = Path(path)
    specs = _apply_input_shapes(specs, input_shapes)
    if not specs:
        raise DatasetError(f"the model has no inputs to feed from {path}")
    if not path.exists():
        raise DatasetError(f"data set not found: {path}")
    if path.is_dir():
        return _open_folder(path, specs, image_options)
    if image_options is not None:
        log.warning("image options are ignored for %s: it is not an image folder", path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        arrays = _open_npz(path, specs)
        return ArrayDataset(path, specs, arrays)
    if suffix == ".npy":
        if len(specs) != 1:
            raise DatasetError(f"{path} is a single .npy array, but the model has {len(specs)} "
                               f"inputs ({', '.join(s.name for s in specs)}); use an .npz with "
                               f"one array per input")
        return ArrayDataset(path, specs, {specs[0].name: _open_npy(path)})
    raise DatasetError(f"unsupported data set file type '{path.suffix or path.name}': {path}; "
                       f"expected an .npz, an .npy, or a folder of .npz/.npy files or images")


def _open_folder(path: Path, specs: Sequence[TensorSpec],
                 image_options: ImageOptions | None) -> Dataset:
    arrays = sorted(p for p in path.iterdir()
                    if p.is_file() and p.suffix.lower() in (".npz", ".npy"))
    images = sorted((p for p in path.rglob("*") if p.is_file() and is_image_file(p)),
                    key=lambda p: p.relative_to(path).as_posix())
    if arrays and images:
        raise DatasetError(f"folder {path} mixes .npz/.npy files ({arrays[0].name}, ...) and "
                           f"images ({images[0].relative_to(path)}, ...); keep one kind")
    if arrays:
        if image_options is not None:
            log.warning("image options are ignored for %s: it holds .npz/.npy files", path)
        return SampleFolderDataset(path, specs, arrays)
    if images:
        return ImageFolderDataset(path, specs, images, image_options or ImageOptions())
    raise DatasetError(f"data set {path} is empty: no .npz/.npy files or images found")


def _apply_input_shapes(specs: Sequence[TensorSpec],
                        input_shapes: Mapping[str, tuple[int, ...]] | None) -> list[TensorSpec]:
    if not input_shapes:
        return list(specs)
    names = [spec.name for spec in specs]
    unknown = [name for name in input_shapes if name not in names]
    if unknown:
        raise UsageError(f"input_shapes names '{unknown[0]}', which is not a model input "
                         f"(inputs: {', '.join(names)})")
    result = []
    for spec in specs:
        shape = input_shapes.get(spec.name)
        if shape is None:
            result.append(spec)
            continue
        if not all(isinstance(d, int | np.integer) and d > 0 for d in shape):
            raise UsageError(f"input_shapes for '{spec.name}' must be positive integers, "
                             f"got {tuple(shape)}")
        result.append(TensorSpec(spec.name, tuple(int(d) for d in shape), spec.dtype))
    return result


def _check_names_present(arrays: Mapping[str, object], specs: Sequence[TensorSpec],
                         where: Path) -> None:
    for spec in specs:
        if spec.name not in arrays:
            found = ", ".join(f"'{key}'" for key in arrays) or "none"
            raise DatasetError(f"{where} has no array for input '{spec.name}' "
                               f"(keys found: {found})")


def _check_dtype(dtype: np.dtype, spec: TensorSpec, where: str) -> None:
    if dtype.kind not in _NUMERIC_KINDS:
        raise DatasetError(f"array for input '{spec.name}' in {where} is not numeric "
                           f"(dtype {dtype}); expected {spec.dtype}")


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


# --------------------------------------------------------------------------- helpers for consumers


def check_finite(sample: Mapping[str, np.ndarray], index: int, source: str | Path) -> None:
    """Raise DatasetError if any float array in ``sample`` holds NaN or Inf."""
    for name, array in sample.items():
        if array.dtype.kind != "f":
            continue
        finite = np.isfinite(array)
        if finite.all():
            continue
        nans = int(np.isnan(array).sum())
        infs = int(finite.size - finite.sum()) - nans
        raise DatasetError(f"input '{name}', sample {index} in {source} has {nans} NaN and "
                           f"{infs} Inf values")


def save_npz_dataset(path: str | Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` as a compressed .npz data set, atomically (temp file + rename)."""
    path = Path(path)
    if not arrays:
        raise DatasetError(f"no arrays to write to {path}")
    for name, array in arrays.items():
        if np.asarray(array).dtype.kind not in _NUMERIC_KINDS:
            raise DatasetError(f"array '{name}' for {path} is not numeric "
                               f"(dtype {np.asarray(array).dtype})")
    with atomic_path(path) as tmp, zipfile.ZipFile(
        tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True
    ) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
    return path
