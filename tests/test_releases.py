"""Release readers: the committed dummy releases, the real OSIE and PS files, bad input."""

import shutil

import numpy as np
import pytest
from conftest import DUMMY, OSIE_DIR, PS_FIX_DIR, needs_osie, needs_ps_fixations

from psm_jax.data.releases import (
    as_rgb_jpeg,
    read_fixation_table,
    read_osie,
    read_ps,
    read_ps_fixations,
    read_table_release,
)


def test_osie_reader_on_dummy_release_is_zero_based():
    release = read_osie(DUMMY["osie_personal"])
    assert release.num_images == 10 and release.num_observers == 5
    assert tuple(release.image_sizes[0]) == (48, 64)
    # The dummy's first fixation of image 0 is at x = 70 (1-based) in a 64-px-wide image.
    first = np.flatnonzero((release.fixations.image == 0) & (release.fixations.observer == 0))[0]
    assert release.fixations.x[first] == pytest.approx(69.0)


@pytest.mark.slow
@needs_osie
def test_osie_reader_on_real_release():
    release = read_osie(OSIE_DIR)
    assert (release.num_images, release.num_observers) == (700, 15)
    assert {tuple(s) for s in release.image_sizes} == {(600, 800)}
    assert len(release.fixations) == 98321
    assert release.fixations.x.min() >= 0 and release.fixations.x.max() < 800
    assert release.fixations.duration_ms.min() > 0


@pytest.mark.slow
@needs_ps_fixations
def test_ps_reader_parses_all_30_real_files():
    names, observers, table = read_ps_fixations(PS_FIX_DIR)
    assert len(names) == 1606 and len(set(names)) == 1606
    assert observers[:2] == ["sub_1", "sub_2"] and len(observers) == 30
    assert np.unique(table.observer).size == 30 and np.unique(table.image).size == 1606
    # Repeated viewings: testID 1..5, as 0-based viewing indices.
    assert table.viewing.min() == 0 and 3 <= table.viewing.max() <= 4
    # fix_Y is the column in 1..1920, fix_X the row in 1..1080 (0-based after reading).
    assert 0 <= table.x.min() and table.x.max() <= 1919
    assert 0 <= table.y.min() and table.y.max() <= 1079
    assert table.x.max() > 1080  # columns do reach beyond the screen height
    assert 10 < np.median(table.duration_ms) < 1000  # seconds converted to ms
    viewings = {
        (i, o, v) for i, o, v in zip(table.image, table.observer, table.viewing, strict=True)
    }
    per_pair = np.bincount([i * 30 + o for i, o, _ in viewings])
    assert np.median(per_pair[per_pair > 0]) == 4


def test_ps_reader_maps_screen_to_image_pixels():
    release = read_ps(DUMMY["personalized_saliency"])
    assert release.num_images == 10 and release.num_observers == 5
    _, _, screen = read_ps_fixations(DUMMY["personalized_saliency"] / "Data" / "fixData")
    heights = release.image_sizes[screen.image, 0]
    widths = release.image_sizes[screen.image, 1]
    np.testing.assert_allclose(
        release.fixations.x, (screen.x + 0.5) * widths / 1920 - 0.5, rtol=1e-5
    )
    np.testing.assert_allclose(
        release.fixations.y, (screen.y + 0.5) * heights / 1080 - 0.5, rtol=1e-5
    )
    # sigma of 64 screen px, per axis in image pixels
    np.testing.assert_allclose(release.sigma[1], [64 * 36 / 1080, 64 * 64 / 1920])


def test_table_reader_csv_and_parquet_agree(tmp_path):
    names, observers, table, _ = read_fixation_table(
        DUMMY["individual_differences"] / "fixations.csv"
    )
    assert len(names) == 10 and len(observers) == 6
    assert set(np.unique(table.viewing)) == {0, 1}  # two sessions
    assert np.isnan(table.x).sum() == 1
    pa = pytest.importorskip("pyarrow")
    import pyarrow.csv
    import pyarrow.parquet

    parquet = tmp_path / "fixations.parquet"
    pyarrow.parquet.write_table(
        pyarrow.csv.read_csv(DUMMY["individual_differences"] / "fixations.csv"), parquet
    )
    assert pa is not None
    names2, observers2, table2, _ = read_fixation_table(parquet)
    assert names2 == names and observers2 == observers
    np.testing.assert_allclose(table2.x, table.x, equal_nan=True)


def test_table_reader_errors_name_file_and_column(tmp_path):
    bad = tmp_path / "fixations.csv"
    bad.write_text("subject,image,x,y\ns1,a.jpg,1,2\n")
    with pytest.raises(ValueError, match=r"fixations.csv lacks columns \['duration_ms'\]"):
        read_fixation_table(bad)
    bad.write_text("subject,image,x,y,duration_ms\ns1,a.jpg,one,2,100\n")
    with pytest.raises(ValueError, match=r"column 'x' row 2 holds 'one'"):
        read_fixation_table(bad)
    # A header-only file used to die in a NumPy reduction.
    bad.write_text("subject,image,x,y,duration_ms\n")
    with pytest.raises(ValueError, match=r"fixations.csv has a header row but no fixations"):
        read_fixation_table(bad)
    # Line numbers stay those of the file after duplicate rows are dropped.
    bad.write_text("subject,image,x,y,duration_ms\ns1,a,1,2,3\ns1,a,1,2,3\ns1,a,x,2,3\n")
    with pytest.raises(ValueError, match=r"column 'x' row 4 holds 'x'"):
        read_fixation_table(bad)


def test_table_reader_drops_and_counts_exact_duplicate_rows(tmp_path):
    table = tmp_path / "fixations.csv"
    table.write_text(
        "subject,image,x,y,duration_ms\n"
        "s1,a.jpg,1,2,100\n"
        "s1,a.jpg,1,2,100\n"  # the row above, written twice: dropped
        "s2,a.jpg,1,2,100\n"  # another person at the same place: kept
        "s1,a.jpg,1,2,150\n"  # another duration: kept
        "s1,a.jpg,1,2,100\n"  # a third copy: dropped
    )
    _, observers, fixations, counts = read_fixation_table(table)
    assert counts == {"duplicate_rows_dropped": 2}
    assert len(fixations) == 3 and observers == ["s1", "s2"]
    np.testing.assert_array_equal(fixations.duration_ms, [100, 100, 150])  # file order kept


def test_table_release_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="fixations.csv"):
        read_table_release(tmp_path, name="id", instructions="HOWTO", sigma_px=24)
    shutil.copy(DUMMY["individual_differences"] / "fixations.csv", tmp_path)
    (tmp_path / "stimuli").mkdir()
    with pytest.raises(FileNotFoundError, match=r"(?s)10 images not found.*HOWTO"):
        read_table_release(tmp_path, name="id", instructions="HOWTO", sigma_px=24)


def test_osie_missing_files_give_instructions(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)fixations.mat does not exist.*NUS-VIP"):
        read_osie(tmp_path)
    shutil.copytree(DUMMY["osie_personal"], tmp_path / "osie")
    (tmp_path / "osie" / "data" / "stimuli" / "1004.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"1004.jpg is missing"):
        read_osie(tmp_path / "osie")


def test_corrupt_image_is_named(tmp_path):
    shutil.copytree(DUMMY["osie_personal"], tmp_path / "osie")
    broken = tmp_path / "osie" / "data" / "stimuli" / "1002.jpg"
    broken.write_bytes(b"not a jpeg at all")
    with pytest.raises(ValueError, match=r"Corrupt or unreadable image .*1002.jpg"):
        read_osie(tmp_path / "osie")
    # A truncated JPEG passes the header check and fails the full decode, named.
    good = (DUMMY["osie_personal"] / "data" / "stimuli" / "1001.jpg").read_bytes()
    with pytest.raises(ValueError, match="Corrupt or unreadable image 1001.jpg"):
        as_rgb_jpeg(good[: len(good) // 2], "1001.jpg")


def test_grayscale_image_becomes_rgb_jpeg():
    gray = (DUMMY["osie_personal"] / "data" / "stimuli" / "1004.jpg").read_bytes()
    encoded, size = as_rgb_jpeg(gray, "1004.jpg")
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(encoded)) as image:
        assert image.mode == "RGB" and image.format == "JPEG" and size == (48, 64)


def _osie_with(tmp_path, edit):
    """A copy of the dummy OSIE release whose fixations.mat has been changed by `edit(records)`."""
    import scipy.io

    root = tmp_path / "osie"
    shutil.copytree(DUMMY["osie_personal"], root)
    mat = root / "data" / "eye" / "fixations.mat"
    records = scipy.io.loadmat(mat, squeeze_me=True, struct_as_record=False)["fixations"]
    plain = []
    for record in records:
        subjects = np.empty(len(record.subjects), dtype=object)
        subjects[:] = [
            {k: np.atleast_1d(getattr(s, k)) for k in ("fix_x", "fix_y", "fix_duration")}
            for s in record.subjects
        ]
        plain.append({"img": record.img, "subjects": subjects})
    edit(plain)
    cell = np.empty(len(plain), dtype=object)
    cell[:] = plain
    scipy.io.savemat(mat, {"fixations": cell})
    return root


@pytest.mark.parametrize(
    "edit, message",
    [
        (  # a duration vector shorter than fix_x used to be stretched silently by np.resize
            lambda r: r[2]["subjects"][1].update(
                fix_duration=r[2]["subjects"][1]["fix_duration"][:0]
            ),
            r"image 1003.jpg \(entry 3\), subject 2: fix_x, fix_y and fix_duration must be vectors "
            r"of one length",
        ),
        (  # fix_y shorter than fix_x used to die in a reshape
            lambda r: r[4]["subjects"][0].update(fix_y=np.array([1.0])),
            r"image 1005.jpg \(entry 5\), subject 1: fix_x, fix_y",
        ),
        (  # a subject that is not a struct used to raise AttributeError
            lambda r: r[1]["subjects"].__setitem__(3, np.array([1.0, 2.0])),
            r"image 1002.jpg \(entry 2\), subject 4 is not a struct with a field 'fix_x'",
        ),
        (  # an image entry that is not a struct
            lambda r: r.__setitem__(6, np.array([7.0])),
            r"entry 7 of fixations is not a struct with a field 'img'",
        ),
    ],
)
def test_a_malformed_osie_file_names_the_image_and_the_observer(tmp_path, edit, message):
    root = _osie_with(tmp_path, edit)
    with pytest.raises(ValueError, match=message):
        read_osie(root)


def test_the_osie_rewrite_of_the_dummy_release_reads_as_before(tmp_path):
    # The helper above round-trips the file faithfully, so the errors come from the edits alone.
    before = read_osie(DUMMY["osie_personal"]).fixations
    after = read_osie(_osie_with(tmp_path, lambda records: None)).fixations
    np.testing.assert_array_equal(before.x, after.x)
    np.testing.assert_array_equal(before.duration_ms, after.duration_ms)


def test_a_csv_with_a_byte_order_mark_reads_its_first_column(tmp_path):
    # Excel's "CSV UTF-8" starts the file with a byte-order mark, which used to stick to the first
    # column's name ('\ufeffsubject'): the ID builder then missed `subject`, and an enrolment
    # table of two people was enrolled as one.
    table = tmp_path / "fixations.csv"
    text = "subject,image,x,y,duration_ms\ns1,a.jpg,1,2,100\ns2,a.jpg,3,4,100\n"
    table.write_bytes("\ufeff".encode() + text.encode())
    for one_person in (False, True):
        _, observers, fixations, _ = read_fixation_table(table, one_person=one_person)
        assert observers == ["s1", "s2"] and len(fixations) == 2


def test_a_csv_that_is_not_utf8_is_named(tmp_path):
    # Excel's plain "CSV" is Windows-1252: the decoding error used to name neither file nor fix.
    table = tmp_path / "fixations.csv"
    table.write_bytes("subject,image,x,y,duration_ms\nRené,a.jpg,1,2,100\n".encode("cp1252"))
    with pytest.raises(ValueError, match=r"fixations.csv is not UTF-8 text.*CSV UTF-8"):
        read_fixation_table(table)


@pytest.mark.parametrize("content", [b"", b"fix_x,fix_y\n1,2\n" * 20], ids=["empty", "text"])
def test_a_fixation_file_that_is_not_a_mat_file_is_named(tmp_path, content):
    # A zero-byte file used to end in scipy's MatReadError, a 17-frame traceback naming no file.
    osie = tmp_path / "osie"
    shutil.copytree(DUMMY["osie_personal"], osie)
    (osie / "data" / "eye" / "fixations.mat").write_bytes(content)
    with pytest.raises(ValueError, match=r"Cannot read .*data/eye/fixations.mat as an OSIE"):
        read_osie(osie)
    ps = tmp_path / "ps"
    shutil.copytree(DUMMY["personalized_saliency"], ps)
    (ps / "Data" / "fixData" / "ImfixData_Sub_3.mat").write_bytes(content)
    with pytest.raises(ValueError, match=r"Cannot read .*fixData/ImfixData_Sub_3.mat as a PS"):
        read_ps(ps)


def _png(array: np.ndarray) -> bytes:
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_16_bit_png_loads_as_its_8_bit_picture(tmp_path):
    # Pillow's RGB conversion clips a 16-bit greyscale image ('I;16') at 255, so a 16-bit PNG
    # used to load nearly white, and a prediction silently differed from the 8-bit picture's.
    from io import BytesIO

    from PIL import Image

    from psm_jax import personalise
    from psm_jax.data import pipeline

    with Image.open(DUMMY["osie_personal"] / "data" / "stimuli" / "1001.jpg") as image:
        grey = np.asarray(image.convert("L"))
    (tmp_path / "8bit.png").write_bytes(_png(grey))
    (tmp_path / "16bit.png").write_bytes(_png(grey.astype(np.uint16) * 257))
    with Image.open(tmp_path / "16bit.png") as image:
        assert image.mode == "I;16"  # what this test is about

    def loads(name):
        path = tmp_path / name
        jpeg, _ = as_rgb_jpeg(path.read_bytes(), name)
        with Image.open(BytesIO(jpeg)) as record:
            built = np.asarray(record)
        return {
            "read_rgb": personalise.read_rgb(path),
            "load_image": personalise.load_image(path, (24, 32))[0],
            "decode_image": pipeline.decode_image(path.read_bytes(), (24, 32)),
            "as_rgb_jpeg": built,
        }

    eight, sixteen = loads("8bit.png"), loads("16bit.png")
    for loader, expected in eight.items():
        difference = np.abs(sixteen[loader].astype(int) - expected.astype(int)).max()
        assert difference <= 1, (loader, difference)
    np.testing.assert_array_equal(eight["read_rgb"][..., 0], grey)

    # Transparent pixels show the white page they would be shown on, not the colour under them.
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[:2, :, 3] = 255  # the top half opaque black, the bottom half transparent black
    (tmp_path / "alpha.png").write_bytes(_png(rgba))
    loaded = personalise.read_rgb(tmp_path / "alpha.png")
    assert (loaded[:2] == 0).all() and (loaded[2:] == 255).all()


def test_the_release_fingerprint_covers_what_the_builder_reads_streaming(tmp_path):
    # A .DS_Store used to make the same release count as another one, and every file was read
    # whole into memory (a 2 GB stray file cost 2.2 GB).
    import tracemalloc

    from psm_jax.data.releases.base import fingerprint, fingerprint_differences

    root = tmp_path / "osie"
    shutil.copytree(DUMMY["osie_personal"], root)
    before = fingerprint(root)
    (root / ".DS_Store").write_bytes(b"\0" * 100)
    (root / "data" / "stimuli" / "._1001.jpg").write_bytes(b"\0" * 100)  # macOS AppleDouble
    (root / "data" / "stimuli" / "Thumbs.db").write_bytes(b"\0" * 100)
    (root / "backup.zip").write_bytes(b"\0" * 100)
    assert fingerprint_differences(before, fingerprint(root)) == []
    # The files it reads are hashed in chunks: a large one costs no more memory than a small one.
    with open(root / "data" / "eye" / "extra.mat", "wb") as large:
        large.truncate(64 * 2**20)
    tracemalloc.start()
    changed = fingerprint(root)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 * 2**20, peak
    assert "data/eye/extra.mat" in " ".join(fingerprint_differences(before, changed))
