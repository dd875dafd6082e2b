"""The job operators and ``stage_only`` refuse wrong arguments at DAG parse time, naming the task."""

from __future__ import annotations

import pytest
from airflow.sdk import Asset, TriggerRule

from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.operators import PostgresToS3StreamOperator, S3StreamAbortOperator, S3StreamCommitOperator


def test_stage_only_refuses_a_manifest_of_its_own() -> None:
    with pytest.raises(ConfigurationError, match=r"part: stage_only=True .*write_manifest must be False"):
        PostgresToS3StreamOperator(
            task_id="part", sql="SELECT 1", s3_bucket="b", s3_key="k", stage_only=True, write_manifest=True
        )


def test_stage_only_refuses_outlets_because_it_publishes_nothing() -> None:
    with pytest.raises(ConfigurationError, match=r"part: .*give the outlets to the job's S3StreamCommitOperator"):
        PostgresToS3StreamOperator(
            task_id="part", sql="SELECT 1", s3_bucket="b", s3_key="k", stage_only=True, outlets=[Asset("s3://b/k")]
        )


def test_job_operators_need_the_staged_results_and_a_prefix() -> None:
    with pytest.raises(ConfigurationError, match=r"commit: staged is required"):
        S3StreamCommitOperator(task_id="commit", s3_bucket="b", s3_prefix="exp", staged=None)
    with pytest.raises(ConfigurationError, match=r"abort: s3_bucket and s3_prefix are required"):
        S3StreamAbortOperator(task_id="abort", s3_bucket="b", s3_prefix="", staged=[])
    with pytest.raises(ConfigurationError, match=r"commit: max_attempts must be a positive integer"):
        S3StreamCommitOperator(task_id="commit", s3_bucket="b", s3_prefix="exp", staged=[], max_attempts=0)


def test_abort_runs_whatever_the_upstream_states_and_as_teardown_does_not_decide_the_run() -> None:
    abort = S3StreamAbortOperator(task_id="abort", s3_bucket="b", s3_prefix="exp", staged=[])
    assert abort.trigger_rule == TriggerRule.ALL_DONE
    assert abort.as_teardown().is_teardown
    assert (
        S3StreamAbortOperator(
            task_id="a2", s3_bucket="b", s3_prefix="exp", staged=[], trigger_rule="one_failed"
        ).trigger_rule
        == "one_failed"
    )
