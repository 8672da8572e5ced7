"""Data sets: every kind, lazy reading, shape checks, and every error a user can cause."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lowbit.data.datasets as datasets_module
from lowbit.data import (
    ArrayDataset,
    ImageFolderDataset,
    ImageOptions,
    SampleFolderDataset,
    check_finite,
    open_dataset,
    save_npz_dataset,
)
from lowbit.errors import DatasetError, UsageError
from lowbit.spec import TensorSpec

F32 = np.dtype("float32")
IMAGE = TensorSpec("image", (1, 3, 8, 8), F32)
MNIST = TensorSpec("x", (1, 1, 4, 4), F32)


def rng_array(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def write_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (10, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


# --------------------------------------------------------------------------- .npz / .npy


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_yields_batch1_slices_in_spec_dtype(tmp_path: Path, compressed: bool) -> None:
    x = rng_array(5, 1, 4, 4)  # float64 on disk
    path = tmp_path / "data.npz"
    (np.savez_compressed if compressed else np.savez)(path, x=x, label=np.array(["a"] * 5))
    data = open_dataset(path, [MNIST])
    assert isinstance(data, ArrayDataset)
    assert len(data) == 5 and data.names == ["x"]
    samples = list(data)
    assert len(samples) == 5
    for i, sample in enumerate(samples):
        assert set(sample) == {"x"}  # 'label' is not a model input: ignored
        assert sample["x"].shape == (1, 1, 4, 4) and sample["x"].dtype == F32
        assert sample["x"].flags.c_contiguous
        np.testing.assert_array_equal(sample["x"], x[i : i + 1].astype(F32))


def test_uncompressed_npz_is_memory_mapped_and_len_reads_no_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    np.savez(tmp_path / "d.npz", x=rng_array(3, 1, 4, 4))
    reads: list[object] = []
    real_read = np.lib.format.read_array

    def counting_read(*args: object, **kwargs: object) -> np.ndarray:
        reads.append(args)
        return real_read(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(np.lib.format, "read_array", counting_read)
    data = open_dataset(tmp_path / "d.npz", [MNIST])
    assert len(data) == 3
    assert isinstance(data._arrays["x"].array(), np.memmap)  # type: ignore[attr-defined]
    next(iter(data))
    assert reads == []  # stored members are mapped, never read whole


def test_dynamic_dims_match_anything(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", tokens=np.arange(12).reshape(3, 4),
             mask=np.ones((3, 4), np.int32))
    specs = [TensorSpec("tokens", ("batch", None), np.dtype("int64")),
             TensorSpec("mask", (None, "seq"), np.dtype("int64"))]
    sample = open_dataset(tmp_path / "d.npz", specs).stacked(2)
    assert sample["tokens"].dtype == np.int64 and sample["mask"].dtype == np.int64
    np.testing.assert_array_equal(sample["tokens"], np.arange(8).reshape(2, 4))


def test_array_one_rank_above_the_input_holds_whole_samples(tmp_path: Path) -> None:
    # A recurrent state [layers=2, batch=1, hidden=3]: its first axis is not the batch.
    state = rng_array(4, 2, 1, 3)
    np.savez(tmp_path / "d.npz", h=state)
    data = open_dataset(tmp_path / "d.npz", [TensorSpec("h", (2, 1, 3), F32)])
    assert len(data) == 4
    np.testing.assert_array_equal(list(data)[3]["h"], state[3].astype(F32))


def test_bare_npy_for_a_single_input_model(tmp_path: Path) -> None:
    x = rng_array(4, 1, 4, 4).astype(F32)
    np.save(tmp_path / "x.npy", x)
    data = open_dataset(tmp_path / "x.npy", [MNIST])
    assert len(data) == 4
    np.testing.assert_array_equal(data.stacked()["x"], x)


def test_take_and_stacked(tmp_path: Path) -> None:
    x = rng_array(5, 1, 4, 4).astype(F32)
    np.savez(tmp_path / "d.npz", x=x)
    data = open_dataset(tmp_path / "d.npz", [MNIST])
    assert len(list(data.take(2))) == 2
    assert len(list(data.take(99))) == 5
    assert list(data.take(0)) == []
    np.testing.assert_array_equal(data.stacked(3)["x"], x[:3])
    assert data.stacked()["x"].shape == (5, 1, 4, 4)
    with pytest.raises(UsageError, match="must be >= 0, got -1"):
        data.take(-1)
    with pytest.raises(UsageError, match="cannot stack 0 samples"):
        data.stacked(0)


def test_from_arrays_checks_like_an_npz() -> None:
    x = rng_array(3, 1, 4, 4)
    data = ArrayDataset.from_arrays({"x": x}, [MNIST])
    assert len(data) == 3 and data.stacked()["x"].dtype == F32
    with pytest.raises(DatasetError, match=r"<arrays> has no array for input 'x' "
                                           r"\(keys found: 'y'\)"):
        ArrayDataset.from_arrays({"y": x}, [MNIST])
    with pytest.raises(DatasetError, match=r"expects \[1,1,4,4\], sample 0 in <arrays> has"):
        ArrayDataset.from_arrays({"x": x[:, :, :2]}, [MNIST])


# --------------------------------------------------------------------------- folders of samples


def test_folder_of_npz_files_sorted_by_name(tmp_path: Path) -> None:
    specs = [TensorSpec("a", (1, 2), F32), TensorSpec("b", (3,), np.dtype("int64"))]
    for i in (2, 0, 1):
        np.savez(tmp_path / f"s{i}.npz", a=np.full((1, 2), i), b=np.arange(3) + i, extra=1)
    (tmp_path / "README.txt").write_text("ignored")
    data = open_dataset(tmp_path, specs)
    assert isinstance(data, SampleFolderDataset)
    assert len(data) == 3 and [p.name for p in data.paths] == ["s0.npz", "s1.npz", "s2.npz"]
    samples = list(data)
    assert [s["a"][0, 0] for s in samples] == [0.0, 1.0, 2.0]
    assert samples[1]["b"].dtype == np.int64 and samples[1]["b"].shape == (3,)


def test_folder_of_npy_files_for_a_single_input_model(tmp_path: Path) -> None:
    for i in range(3):
        np.save(tmp_path / f"{i}.npy", np.full((1, 1, 4, 4), i, np.float64))
    data = open_dataset(tmp_path, [MNIST])
    assert len(data) == 3
    assert data.stacked()["x"][:, 0, 0, 0].tolist() == [0.0, 1.0, 2.0]


def test_folder_npy_with_multi_input_model_is_rejected(tmp_path: Path) -> None:
    np.save(tmp_path / "0.npy", np.zeros((1, 2)))
    specs = [TensorSpec("a", (1, 2), F32), TensorSpec("b", (1, 2), F32)]
    with pytest.raises(DatasetError, match=r"0\.npy is an \.npy file, but the model has 2 inputs"):
        open_dataset(tmp_path, specs)


def test_folder_sample_with_wrong_shape_names_file_and_index(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((1, 1, 4, 4)))
    np.save(tmp_path / "b.npy", np.zeros((1, 1, 5, 4)))
    data = open_dataset(tmp_path, [MNIST])
    it = iter(data)
    next(it)
    with pytest.raises(DatasetError, match=r"input 'x' expects \[1,1,4,4\], sample 1 in .*b\.npy "
                                           r"has \[1,1,5,4\]"):
        next(it)


def test_folder_sample_missing_an_input(tmp_path: Path) -> None:
    np.savez(tmp_path / "s.npz", a=np.zeros((1, 2)))
    specs = [TensorSpec("a", (1, 2), F32), TensorSpec("b", (1, 2), F32)]
    with pytest.raises(DatasetError, match=r"s\.npz has no array for input 'b' \(keys found: 'a'\)"):
        next(iter(open_dataset(tmp_path, specs)))


# --------------------------------------------------------------------------- image folders


def make_class_tree(root: Path) -> None:
    write_image(root / "dog" / "2.png", (0, 0, 200))
    write_image(root / "cat" / "b.jpg", (0, 200, 0))
    write_image(root / "cat" / "a.png", (200, 0, 0))
    (root / "cat" / "labels.txt").write_text("not an image")
    (root / "cat" / "._a.png").write_bytes(b"macOS resource fork")


def test_image_folder_is_recursive_sorted_and_preprocessed(tmp_path: Path) -> None:
    make_class_tree(tmp_path)
    options = ImageOptions(mean=(100.0,), scale=(0.01,))
    data = open_dataset(tmp_path, [IMAGE], image_options=options)
    assert isinstance(data, ImageFolderDataset)
    assert [p.relative_to(tmp_path).as_posix() for p in data.paths] == \
        ["cat/a.png", "cat/b.jpg", "dog/2.png"]
    first = next(iter(data))["image"]
    assert first.shape == (1, 3, 8, 8) and first.dtype == F32
    np.testing.assert_allclose(first[0, :, 0, 0], [1.0, -1.0, -1.0], atol=1e-6)


def test_image_folder_is_read_lazily(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(6):
        write_image(tmp_path / f"{i}.png", (i, i, i))
    opened: list[Path] = []
    real = datasets_module.load_image

    def counting(path: Path, *args: object) -> np.ndarray:
        opened.append(path)
        return real(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(datasets_module, "load_image", counting)
    data = open_dataset(tmp_path, [IMAGE])
    assert len(data) == 6 and opened == []
    it = data.take(4)
    assert opened == []  # take() is lazy too
    next(it), next(it)
    assert [p.name for p in opened] == ["0.png", "1.png"]


def test_image_folder_nhwc_gray_and_input_shapes_for_dynamic_hw(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", (50, 50, 50), size=(30, 20))
    spec = TensorSpec("img", ("n", None, None, 1), np.dtype("float16"))
    options = ImageOptions(pixel_format="gray", layout="nhwc", resize=(16,))
    with pytest.raises(DatasetError, match="dynamic height or width; give its shape with "
                                           "input_shapes"):
        open_dataset(tmp_path, [spec], image_options=options)
    data = open_dataset(tmp_path, [spec], image_options=options,
                        input_shapes={"img": (1, 12, 14, 1)})
    sample = next(iter(data))["img"]
    assert sample.shape == (1, 12, 14, 1) and sample.dtype == np.float16
    np.testing.assert_allclose(sample, 50.0)


@pytest.mark.parametrize(
    ("specs", "options", "message"),
    [
        ([IMAGE, MNIST], None, r"feeds one input, but the model has 2 \(image, x\)"),
        ([TensorSpec("v", (1, 64), F32)], None, r"needs a 4-D image input, but input 'v' has"),
        ([TensorSpec("i", (4, 3, 8, 8), F32)], None, "has batch 4"),
        ([IMAGE], ImageOptions(pixel_format="gray"), "3 channels, but pixel_format 'gray' gives 1"),
        ([TensorSpec("i", (1, 8, 8, 3), F32)], None, r"\(nchw\) has 8 channels"),
    ],
)
def test_image_folder_rejects_models_it_cannot_feed(
    tmp_path: Path, specs: list[TensorSpec], options: ImageOptions | None, message: str
) -> None:
    write_image(tmp_path / "a.png", (1, 2, 3))
    with pytest.raises(DatasetError, match=message):
        open_dataset(tmp_path, specs, image_options=options)


def test_image_folder_rejects_options_that_do_not_fit(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", (1, 2, 3))
    with pytest.raises(UsageError, match="mean has 2 values but input 'image'"):
        open_dataset(tmp_path, [IMAGE], image_options=ImageOptions(mean=(1.0, 2.0)))


def test_unreadable_image_in_folder_names_the_file(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", (1, 2, 3))
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8 garbage")
    data = open_dataset(tmp_path, [IMAGE])
    with pytest.raises(DatasetError, match=r"cannot read image .*b\.jpg"):
        list(data)


# --------------------------------------------------------------------------- errors


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"data set not found: .*nope\.npz"):
        open_dataset(tmp_path / "nope.npz", [MNIST])


def test_unsupported_file_type(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("1,2,3")
    with pytest.raises(DatasetError, match=r"unsupported data set file type '\.csv'.*data\.csv"):
        open_dataset(tmp_path / "data.csv", [MNIST])


def test_npz_missing_an_input_lists_keys_found(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", input=np.zeros((2, 1, 4, 4)), label=np.zeros(2))
    with pytest.raises(DatasetError, match=r"d\.npz has no array for input 'x' "
                                           r"\(keys found: 'input', 'label'\)"):
        open_dataset(tmp_path / "d.npz", [MNIST])


def test_npz_arrays_with_different_sample_counts(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", a=np.zeros((3, 2)), b=np.zeros((4, 2)))
    specs = [TensorSpec("a", (1, 2), F32), TensorSpec("b", (1, 2), F32)]
    with pytest.raises(DatasetError, match=r"d\.npz hold different numbers of samples "
                                           r"\('a': 3, 'b': 4\)"):
        open_dataset(tmp_path / "d.npz", specs)


def test_npz_wrong_shape_message(tmp_path: Path) -> None:
    np.savez(tmp_path / "data.npz", x=np.zeros((2, 3, 32, 32)))
    spec = TensorSpec("x", (1, 3, 224, 224), F32)
    with pytest.raises(DatasetError, match=r"input 'x' expects \[1,3,224,224\], sample 0 in "
                                           r".*data\.npz has \[1,3,32,32\]"):
        open_dataset(tmp_path / "data.npz", [spec])


def test_fixed_batch_of_one_must_match(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2, 1, 4, 4)))  # whole samples with batch 2
    with pytest.raises(DatasetError, match=r"expects \[1,1,4,4\], sample 0 .* has \[2,1,4,4\]"):
        open_dataset(tmp_path / "d.npz", [MNIST])
    np.savez(tmp_path / "e.npz", x=np.zeros((3, 2, 1, 4, 4)))
    spec = TensorSpec("x", ("batch", 1, 4, 4), F32)
    assert next(iter(open_dataset(tmp_path / "e.npz", [spec])))["x"].shape == (2, 1, 4, 4)


def test_input_shapes_override_validation(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 1, 4, 4)))
    with pytest.raises(DatasetError, match=r"expects \[1,1,6,6\]"):
        open_dataset(tmp_path / "d.npz", [MNIST], input_shapes={"x": (1, 1, 6, 6)})
    with pytest.raises(UsageError, match=r"names 'y', which is not a model input \(inputs: x\)"):
        open_dataset(tmp_path / "d.npz", [MNIST], input_shapes={"y": (1,)})
    with pytest.raises(UsageError, match="must be positive integers"):
        open_dataset(tmp_path / "d.npz", [MNIST], input_shapes={"x": (1, 0, 4, 4)})


def test_empty_npz_and_empty_folder(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((0, 1, 4, 4)))
    with pytest.raises(DatasetError, match=r"d\.npz is empty: 0 samples"):
        open_dataset(tmp_path / "d.npz", [MNIST])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing to read")
    with pytest.raises(DatasetError, match=r"empty is empty: no \.npz/\.npy files or images"):
        open_dataset(empty, [MNIST])


def test_scalar_array_cannot_count_samples(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.float32(1.0))
    with pytest.raises(DatasetError, match="array 'x' in .*x.npy is a scalar"):
        open_dataset(tmp_path / "x.npy", [MNIST])


@pytest.mark.parametrize("bad", [np.array(["a", "b"]), np.array([{}, None], dtype=object)])
def test_non_numeric_array(tmp_path: Path, bad: np.ndarray) -> None:
    np.savez(tmp_path / "d.npz", x=bad)
    with pytest.raises(DatasetError, match=r"array for input 'x' in .*d\.npz is not numeric"):
        open_dataset(tmp_path / "d.npz", [TensorSpec("x", (None,), F32)])


def test_npz_that_is_not_a_zip(tmp_path: Path) -> None:
    (tmp_path / "d.npz").write_bytes(b"hello")
    with pytest.raises(DatasetError, match=r"d\.npz is not a readable \.npz archive"):
        open_dataset(tmp_path / "d.npz", [MNIST])


def test_npy_for_multi_input_model(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 2)))
    specs = [TensorSpec("a", (1, 2), F32), TensorSpec("b", (1, 2), F32)]
    with pytest.raises(DatasetError, match=r"single \.npy array, but the model has 2 inputs "
                                           r"\(a, b\)"):
        open_dataset(tmp_path / "x.npy", specs)


def test_folder_mixing_arrays_and_images(tmp_path: Path) -> None:
    np.save(tmp_path / "0.npy", np.zeros((1, 3, 8, 8)))
    write_image(tmp_path / "a.png", (1, 2, 3))
    with pytest.raises(DatasetError, match="mixes .npz/.npy files"):
        open_dataset(tmp_path, [IMAGE])


# --------------------------------------------------------------------------- helpers


def test_check_finite_names_input_and_sample() -> None:
    check_finite({"x": np.ones(3, F32), "ids": np.arange(3)}, 0, "d.npz")
    bad = np.array([1.0, np.nan, np.inf, -np.inf], F32)
    with pytest.raises(DatasetError, match=r"input 'x', sample 7 in d\.npz has 1 NaN and 2 Inf"):
        check_finite({"x": bad}, 7, "d.npz")


def test_save_npz_dataset_round_trips_atomically(tmp_path: Path) -> None:
    arrays: dict[str, np.ndarray] = {"input:0": rng_array(2, 3).astype(F32), "file": np.arange(2)}
    path = save_npz_dataset(tmp_path / "out" / "ref.npz", arrays)
    assert path == tmp_path / "out" / "ref.npz"
    assert [p.name for p in path.parent.iterdir()] == ["ref.npz"]  # no temp files left
    with np.load(path) as loaded:
        assert set(loaded.files) == set(arrays)
        for name, array in arrays.items():
            np.testing.assert_array_equal(loaded[name], array)
    specs = [TensorSpec("input:0", (1, 3), F32), TensorSpec("file", ("n",), np.dtype("int64"))]
    assert len(open_dataset(path, specs)) == 2


def test_save_npz_dataset_rejects_non_numeric(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="array 'x' for .* is not numeric"):
        save_npz_dataset(tmp_path / "r.npz", {"x": np.array(["a"])})
    assert not list(tmp_path.iterdir())
