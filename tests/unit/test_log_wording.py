"""Log lines count things in plain English: ``1 part``, ``3 files``; one PUT is no "0 parts"."""

from __future__ import annotations

from airflow_s3stream.operators.multipart_upload import _how_sent
from airflow_s3stream.progress import ProgressSnapshot, plural
from airflow_s3stream.publish.commit import _common_folder


def test_plural_says_one_in_the_singular_and_every_other_count_in_the_plural() -> None:
    assert plural(1, "part") == "1 part"
    assert plural(0, "part") == "0 parts"
    assert plural(1_500, "row") == "1,500 rows"
    assert plural(2, "entry", "entries") == "2 entries"


def test_a_finished_upload_of_one_part_says_one_part() -> None:
    done = ProgressSnapshot("s3://b/k", bytes=4_401, seconds=1.0, parts=1, done=True)
    assert done.describe().startswith("s3://b/k done: 1 part, 0.0 MB")
    rows = ProgressSnapshot("export", bytes=10, seconds=1.0, rows=1, done=True)
    assert rows.describe().startswith("export done: 1 row, ")


def test_an_upload_in_one_put_says_so_and_never_zero_parts() -> None:
    assert _how_sent(0, 0) == "in one PUT"
    assert _how_sent(1, 0) == "in 1 part"
    assert _how_sent(3, 1) == "in 3 parts (1 reused from an earlier try)"


def test_a_commit_names_the_folder_its_files_lie_under() -> None:
    keys = ["exports/orders/2024-01-01/part-0000.csv.gz", "exports/orders/2024-01-01/part-0001.csv.gz"]
    assert _common_folder([*keys, "exports/orders/2024-01-01/_manifest.json"]) == "exports/orders/2024-01-01/"
    assert _common_folder(["exports/orders/part-0000.csv", "exports/other.csv"]) == "exports/"
    assert _common_folder(["a.csv", "b.csv"]) == ""
    assert _common_folder([]) == ""
