"""teacher_export.data without torch: the run record says how the rows were split."""
import pytest

from conftest import write_csv
from teacher_export.data import load_dataset


@pytest.mark.parametrize("classes,split_col,expected", [
    (None, None, "seeded stratified 7:1:2 split"),
    (["0", "1"], None, "every labelled row scored as test"),
    (None, "split", "seeded stratified 0.1 of train (seed 0)"),
])
def test_the_run_record_names_the_split_that_was_made(tmp_path, classes, split_col, expected):
    rows = [{"id": f"r{i}", "text": f"answer {i}", "label": str(i % 2), "split": "train"} for i in range(40)]
    path = write_csv(tmp_path / "d.csv", rows)
    ds = load_dataset(str(path), split_col=split_col, classes=classes)
    assert ds.info["validation"] == expected
    assert ("test" in ds.roles) == (split_col is None)
