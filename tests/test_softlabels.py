"""tinykd.files.softlabels: the teacher soft-label file, its round trip and every refusal."""
import csv
import json
import os

import numpy as np
import pytest

from tinykd.files.softlabels import (SoftLabelError, read_sidecar, read_soft_label_table, read_soft_labels,
                               sidecar_path, write_soft_labels)

P = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.25, 0.25, 0.5], [1 / 3, 1 / 3, 1 / 3]])
IDS = ["a1", "7", "x-3", "042"]
CLASSES = [0, 1, 2]


def _write_raw(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "t.csv"
    z = np.log(P)
    write_soft_labels(path, IDS, CLASSES, P, logits=z, extra={"split": ["train", "train", "test", "unlabeled"],
                                                               "fold": [0, 1, -1, -1]},
                      meta={"base_model": "tiny", "temperature": 1.0})
    return str(path)


def test_round_trip_values_header_and_sidecar(good):
    with open(good) as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["id", "p_0", "p_1", "p_2", "logit_0", "logit_1", "logit_2", "split", "fold"]
    assert [r[0] for r in rows[1:]] == IDS  # leading zero kept: ids are strings
    assert rows[1][7:] == ["train", "0"]
    got = read_soft_labels(good, IDS, CLASSES)
    assert got.dtype == np.float32 and got.shape == (4, 3)
    np.testing.assert_allclose(got, P, atol=1e-7)
    side = read_sidecar(good)
    assert sidecar_path(good).endswith("t.json") and os.path.exists(sidecar_path(good))
    assert side["classes"] == ["0", "1", "2"] and side["base_model"] == "tiny" and side["n_rows"] == 4
    assert side["temperature"] == 1.0


def test_joined_by_id_not_row_order_and_extra_ids_ignored(good):
    got = read_soft_labels(good, ["042", "a1"], ["0", "1", "2"])
    np.testing.assert_allclose(got, P[[3, 0]], atol=1e-7)
    # integer ids compare as strings
    np.testing.assert_allclose(read_soft_labels(good, [7], CLASSES), P[[1]], atol=1e-7)


def test_class_columns_matched_by_label_not_position(good):
    got = read_soft_labels(good, IDS, [2, 0, 1])
    np.testing.assert_allclose(got, P[:, [2, 0, 1]], atol=1e-7)


def test_from_logits_softmax(tmp_path):
    z = np.array([[1000.0, 999.0, 0.0], [0.0, 0.0, 0.0]])  # stable softmax: no overflow
    path = _write_raw(tmp_path / "z.csv", ["id", "logit_a", "logit_b", "logit_c"],
                      [["r1", *z[0]], ["r2", *z[1]]])
    got = read_soft_labels(path, ["r2", "r1"], ["a", "b", "c"], from_logits=True)
    e = np.exp([0.0, -1.0, -1000.0])
    np.testing.assert_allclose(got[1], e / e.sum(), rtol=1e-6)
    np.testing.assert_allclose(got[0], [1 / 3] * 3, rtol=1e-6)
    with pytest.raises(SoftLabelError, match="this file holds logits; pass from_logits=True"):
        read_soft_labels(path, ["r1"], ["a", "b", "c"])


def test_from_logits_on_full_file_matches_probabilities(good):
    np.testing.assert_allclose(read_soft_labels(good, IDS, CLASSES, from_logits=True), P, atol=1e-6)


def test_table(good):
    ids, classes, p = read_soft_label_table(good)
    assert ids == IDS and classes == ["0", "1", "2"]
    np.testing.assert_allclose(p, P, atol=1e-7)


def test_missing_file(tmp_path):
    with pytest.raises(SoftLabelError, match="not found"):
        read_soft_labels(tmp_path / "nope.csv", ["a"], [0, 1])


def test_no_id_column(tmp_path):
    path = _write_raw(tmp_path / "x.csv", ["key", "p_0", "p_1"], [["a", 0.5, 0.5]])
    with pytest.raises(SoftLabelError, match="no 'id' column"):
        read_soft_labels(path, ["a"], [0, 1])


def test_duplicated_ids_named(tmp_path):
    path = _write_raw(tmp_path / "x.csv", ["id", "p_0", "p_1"],
                      [["a", 0.5, 0.5], ["b", 0.5, 0.5], ["a", 0.1, 0.9]])
    with pytest.raises(SoftLabelError, match=r"duplicated ids.*'a'"):
        read_soft_labels(path, ["b"], [0, 1])


def test_missing_ids_counted_and_named(good):
    with pytest.raises(SoftLabelError, match=r"2 of 3 requested ids are not in the file.*'zz'.*'yy'"):
        read_soft_labels(good, ["a1", "zz", "yy"], CLASSES)


def test_allow_missing_gives_nan_rows(good):
    got = read_soft_labels(good, ["zz", "a1"], CLASSES, allow_missing=True)
    mask = ~np.isnan(got[:, 0])
    assert mask.tolist() == [False, True]
    assert np.all(np.isnan(got[0]))
    np.testing.assert_allclose(got[1], P[0], atol=1e-7)


def test_class_columns_mismatch_lists_expected_and_found(good):
    with pytest.raises(SoftLabelError, match=r"expected \['p_0', 'p_1', 'p_2', 'p_3'\], found \['p_0', 'p_1', 'p_2'\]"):
        read_soft_labels(good, IDS, [0, 1, 2, 3])
    with pytest.raises(SoftLabelError, match="class columns do not match"):
        read_soft_labels(good, IDS, ["low", "mid", "high"])


@pytest.mark.parametrize("bad,what", [("nan", "NaN or inf"), ("inf", "NaN or inf"), ("-0.1", "negative")])
def test_nan_inf_negative_named_by_id(tmp_path, bad, what):
    rows = [["ok", 0.5, 0.5], ["bad1", bad, 1.1 if bad == "-0.1" else 0.5]]
    path = _write_raw(tmp_path / "x.csv", ["id", "p_0", "p_1"], rows)
    with pytest.raises(SoftLabelError, match=rf"{what}.*'bad1'"):
        read_soft_labels(path, ["ok"], [0, 1])


def test_rows_not_summing_to_one(tmp_path):
    path = _write_raw(tmp_path / "x.csv", ["id", "p_0", "p_1"], [["ok", 0.5, 0.5], ["off", 0.5, 0.6]])
    with pytest.raises(SoftLabelError, match=r"do not sum to 1.*1\.1.*'off'"):
        read_soft_labels(path, ["ok"], [0, 1])
    # within tolerance is fine, and a loose tol accepts it
    got = read_soft_labels(path, ["off"], [0, 1], tol=0.2)
    np.testing.assert_allclose(got, [[0.5, 0.6]], atol=1e-7)


def test_unreadable_number(tmp_path):
    path = _write_raw(tmp_path / "x.csv", ["id", "p_0", "p_1"], [["r", "abc", 0.5]])
    with pytest.raises(SoftLabelError, match="unreadable.*'r'"):
        read_soft_labels(path, ["r"], [0, 1])


def test_no_probability_columns(tmp_path):
    path = _write_raw(tmp_path / "x.csv", ["id", "score"], [["r", 1]])
    with pytest.raises(SoftLabelError, match="no p_<label> columns"):
        read_soft_labels(path, ["r"], [0, 1])


def test_writer_refuses_bad_input(tmp_path):
    with pytest.raises(SoftLabelError, match="shape"):
        write_soft_labels(tmp_path / "w.csv", ["a", "b"], [0, 1], np.ones((3, 2)) / 2)
    with pytest.raises(SoftLabelError, match="duplicated ids"):
        write_soft_labels(tmp_path / "w.csv", ["a", "a"], [0, 1], np.ones((2, 2)) / 2)
    with pytest.raises(SoftLabelError, match="NaN"):
        write_soft_labels(tmp_path / "w.csv", ["a", "b"], [0, 1], np.array([[np.nan, 1], [0.5, 0.5]]))
    assert not os.path.exists(tmp_path / "w.csv")


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path, good):
    path = tmp_path / "t.csv"
    before = path.read_text()
    write_soft_labels(path, ["q"], ["x", "y"], [[0.25, 0.75]], meta={"note": 1})
    assert path.read_text() != before
    assert sorted(os.listdir(tmp_path)) == ["t.csv", "t.json"]
    side = json.loads((tmp_path / "t.json").read_text())
    assert side["classes"] == ["x", "y"] and side["note"] == 1
    np.testing.assert_allclose(read_soft_labels(path, ["q"], ["y", "x"]), [[0.75, 0.25]])


def test_probabilities_written_with_enough_digits(tmp_path):
    p = np.array([[0.123456789, 0.876543211]])
    write_soft_labels(tmp_path / "d.csv", ["r"], [0, 1], p)
    got = read_soft_labels(tmp_path / "d.csv", ["r"], [0, 1])
    assert abs(float(got[0, 0]) - 0.12345679) < 1e-7


def test_teacher_merge_command_writes_one_file_for_all_items(tmp_path, capsys):
    """``tinykd-teacher merge``: per-item files (different classes) become one file joined by id, a
    class an item lacks is 0 in its rows; an id in two files, or --out naming an input, is refused."""
    from teacher_export.cli import main

    a, b, out = tmp_path / "item1.csv", tmp_path / "item2.csv", tmp_path / "all.csv"
    write_soft_labels(a, ["a1", "a2"], ["0", "1"], [[0.9, 0.1], [0.2, 0.8]])
    write_soft_labels(b, ["b1"], ["0", "1", "2"], [[0.1, 0.3, 0.6]])
    assert main(["merge", str(a), str(b), "--out", str(out)]) == 0
    ids, classes, p = read_soft_label_table(out)
    assert ids == ["a1", "a2", "b1"] and classes == ["0", "1", "2"]
    np.testing.assert_allclose(p, [[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.1, 0.3, 0.6]], atol=1e-7)
    assert read_sidecar(out)["merged_from"] == [str(a), str(b)]
    np.testing.assert_allclose(read_soft_labels(out, ["b1", "a2"], ["2", "1", "0"]), [[0.6, 0.3, 0.1], [0, 0.8, 0.2]],
                               atol=1e-7)
    capsys.readouterr()
    assert main(["merge", str(a), str(a), "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert "'a1' is in two teacher files" in err and "\n" not in err and not (tmp_path / "x.csv").exists()
    assert main(["merge", str(a), str(b), "--out", str(a)]) == 2
    assert read_soft_label_table(a)[0] == ["a1", "a2"]


# ------------------------------------------------------------- issue 15: read like a data file
def test_bom_semicolons_and_windows_1252_bytes_are_read_like_a_data_file(tmp_path):
    path = tmp_path / "excel.csv"
    body = "id;p_0;p_1\r\nnaïve;0,25;0,75\r\n".replace("0,25;0,75", "0.25;0.75") + "b2;1;0\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode("cp1252"))
    got = read_soft_labels(path, ["naïve", "b2"], [0, 1])
    np.testing.assert_allclose(got, [[0.25, 0.75], [1, 0]])
    path.write_bytes(body.encode("utf-8").replace(b"id;", b"\xef\xbb\xbfid;"))
    np.testing.assert_allclose(read_soft_labels(path, ["b2"], [0, 1]), [[1, 0]])


def test_errors_name_the_file(tmp_path):
    ragged = _write_raw(tmp_path / "ragged.csv", ["id", "p_0", "p_1"], [["a", 0.5, 0.5], ["b", 0.5, 0.5, 9]])
    with pytest.raises(SoftLabelError, match=r"ragged.csv: line 3 has 4 fields, the header has 3"):
        read_soft_labels(ragged, ["a"], [0, 1])
    (tmp_path / "bin.csv").write_bytes(b"id,p_0\x00")
    with pytest.raises(SoftLabelError, match="bin.csv: holds NUL bytes"):
        read_soft_labels(tmp_path / "bin.csv", ["a"], [0, 1])
    (tmp_path / "e.csv").write_bytes(b"")
    with pytest.raises(SoftLabelError, match=r"e.csv: empty file"):
        read_soft_label_table(tmp_path / "e.csv")
    (tmp_path / "s.csv").write_text("id,p_0,p_1\na,0.5,0.5\n")
    (tmp_path / "s.json").write_text("{not json")
    with pytest.raises(SoftLabelError, match=r"s.json: unreadable sidecar"):
        read_sidecar(tmp_path / "s.csv")


def test_a_field_over_16_mb_and_the_process_csv_limit(tmp_path):
    big = "x" * (17 * 2**20)
    soft = _write_raw(tmp_path / "t.csv", ["id", "p_0", "p_1", "note"], [["a", 0.5, 0.5, big], ["b", 1, 0, ""]])
    limit = csv.field_size_limit()
    np.testing.assert_allclose(read_soft_labels(soft, ["b", "a"], [0, 1]), [[1, 0], [0.5, 0.5]])
    assert csv.field_size_limit() == limit  # reading a soft-label file leaves the process-wide limit alone
    from tinykd.files.csvfiles import read_table

    data = _write_raw(tmp_path / "d.csv", ["id", "text"], [["a", big]])
    assert len(read_table(data, ["text"]).rows[0][1]) == len(big)  # a data file read afterwards still works


def test_numbers_in_any_spelling_are_one_score_on_both_sides(tmp_path):
    spelt = _write_raw(tmp_path / "t.csv", ["id", "p_1.0", "p_02", "p_3"], [["a", 0.2, 0.3, 0.5]])
    np.testing.assert_allclose(read_soft_labels(spelt, ["a"], [1, 2, 3]), [[0.2, 0.3, 0.5]], atol=1e-7)
    np.testing.assert_allclose(read_soft_labels(spelt, ["a"], ["3", "1", "2.0"]), [[0.5, 0.2, 0.3]], atol=1e-7)
    assert read_soft_label_table(spelt)[1] == ["1", "2", "3"]
    twice = _write_raw(tmp_path / "u.csv", ["id", "p_1", "p_1.0", "p_2"], [["a", 0.2, 0.3, 0.5]])
    with pytest.raises(SoftLabelError, match=r"u.csv: columns p_1, p_1.0 are one score spelt two ways"):
        read_soft_labels(twice, ["a"], [1, 2])
    write_soft_labels(tmp_path / "w.csv", ["a"], [1.0, 2.0], [[0.4, 0.6]], logits=[[0.0, 1.0]])
    with open(tmp_path / "w.csv") as fh:
        assert next(csv.reader(fh)) == ["id", "p_1", "p_2", "logit_1", "logit_2"]
    write_soft_labels(tmp_path / "x.csv", ["a"], ["01", "correct"], [[0.4, 0.6]])  # text labels stay as they are
    with open(tmp_path / "x.csv") as fh:
        assert next(csv.reader(fh)) == ["id", "p_01", "p_correct"]


def test_teacher_export_and_tinykd_train_agree_on_the_label_spelling(tmp_path, capsys):
    from teacher_export.data import load_dataset
    from conftest import run_cli

    rows = [{"id": f"r{i}", "text": f"acid rain {'marble ' * (i % 3)}", "label": ("01", "1.0", "2")[i % 3],
             "split": "train"} for i in range(30)]
    data = _write_raw(tmp_path / "d.csv", list(rows[0]), [list(r.values()) for r in rows])
    ds = load_dataset(data, split_col="split", val_frac=0.2)
    assert ds.class_keys == ["1", "2"]
    p = np.where(np.array([[c == 1, c == 2] for c in ds.labels]), 0.9, 0.1)
    write_soft_labels(tmp_path / "t.csv", ds.ids, ds.class_keys, p)  # what teacher_export's _write does
    rc, _, err = run_cli(capsys, "train", data, "--teacher", tmp_path / "t.csv", "--out", tmp_path / "m.npz",
                         "--epochs", "1", "-q")
    assert rc == 0, err
    import tinykd

    assert tinykd.load(tmp_path / "m.npz").classes == [1, 2]
