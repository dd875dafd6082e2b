"""The staged commit's state format and the manifest fields it fills in (pure, no server)."""

from __future__ import annotations

import json

import pytest

from airflow_s3stream.export.keys import commit_state_key
from airflow_s3stream.publish.manifest import index_entry
from airflow_s3stream.publish.state import CommitPlan
from airflow_s3stream.s3.multipart.part_record import PartRecord
from airflow_s3stream.s3.multipart.result import UploadResult
from airflow_s3stream.s3.multipart.staged import StagedUpload

STAGED = StagedUpload(
    "b",
    "exp/day/part-00000.csv",
    "upload-1",
    "CRC32C",
    "COMPOSITE",
    (PartRecord(1, 5 * 1024 * 1024, '"e1"', "AAAAAA==", "0" * 32), PartRecord(2, 7, '"e2"', "BBBBBB==", "1" * 32)),
)


def test_commit_state_key_sits_beside_the_manifest() -> None:
    assert commit_state_key("exp/day/") == "exp/day/_commit.json"


def test_commit_plan_round_trips_through_its_json_state() -> None:
    plan = CommitPlan(
        "b", (STAGED,), ("exp/day/part-00003.csv",), "exp/day/_manifest.json", {"files": [{"key": STAGED.key}]}
    )
    raw = plan.to_json()
    assert CommitPlan.from_json(raw) == plan
    assert json.loads(raw)["version"] == 1 and STAGED.size == 5 * 1024 * 1024 + 7
    assert len(raw) < 600  # a few hundred bytes per file


def test_commit_state_of_another_version_is_refused() -> None:
    raw = json.loads(CommitPlan("b", (STAGED,)).to_json())
    raw["version"] = 2
    with pytest.raises(ValueError, match="commit state version 2"):
        CommitPlan.from_json(json.dumps(raw).encode())


def test_index_entry_names_etag_and_checksum() -> None:
    result = UploadResult("b", "k", 10, 2, 5, "abc-2", "CRC32C", "COMPOSITE", "xyz==-2", 0.1)
    assert index_entry(result) == {
        "etag": "abc-2",
        "checksum": {"algorithm": "CRC32C", "type": "COMPOSITE", "value": "xyz==-2", "etag": "abc-2"},
    }


def test_a_commit_state_stored_by_an_earlier_release_still_loads() -> None:
    stored = (
        b'{"version":1,"bucket":"b","index_key":"exp/day/_manifest.json","index":{"files":[{"key":"exp/day/'
        b'part-00000.csv"}]},"delete":["exp/day/part-00004.csv"],"uploads":[{"key":"exp/day/part-00000.csv",'
        b'"upload_id":"upload-1","algorithm":"CRC32C","checksum_type":"COMPOSITE","parts":[[1,5242880,'
        b'"\\"e1\\"","AAAAAA==","00000000000000000000000000000000"],[2,7,"\\"e2\\"","BBBBBB==",'
        b'"11111111111111111111111111111111"]]}]}'
    )
    plan = CommitPlan.from_json(stored)
    assert plan == CommitPlan(
        "b", (STAGED,), ("exp/day/part-00004.csv",), "exp/day/_manifest.json", {"files": [{"key": STAGED.key}]}
    )
    assert plan.to_json() == stored
