"""The provider view in a real Airflow, driven in headless Chromium: the api-server mounts the
plugin, the DAG runs our real operators, and the pages are read as a browser shows them.

Three checks: the verification page of a tampered bag names the member; the export page lists
the manifest's files; a user without access is refused and sees nothing of the DAG.

"Without access" is real, not simulated: the deployment runs Airflow's SimpleAuthManager with
``simple_auth_manager_all_admins`` off and two users, ``admin`` (role admin) and ``outsider``
with no role. SimpleAuthManager authenticates a role-less user (a valid JWT, the UI's ``_token``
cookie) but authorises nothing for it: ``is_authorized_dag`` and ``get_authorized_dag_ids`` both
refuse. (Per-DAG access in SimpleAuthManager needs multi-team mode with teams bound to DAG
bundles; the role-less user exercises the same two calls the plugin makes.) The browser carries
the cookie exactly as the UI sets it after a login.

Chromium is Debian's ``chromium``: when it is missing the test fails, naming the package.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import devservices
from tests.support.airflow_stack import AirflowStack
from tests.support.bags import make_bag, zip_dir
from tests.tools.screenshots import Browser, chromium

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAG_ID = "s3stream_ui_e2e"
TAMPERED_MEMBER = "acc17/data/img/scan.tif"
PASSWORDS = {"admin": "admin-e2e-password", "outsider": "outsider-e2e-password"}

DAG_SOURCE = '''
"""The provider view's e2e DAG: a tampered bag to verify and a small export with a manifest."""
import os

from airflow.sdk import DAG

from airflow_s3stream.operators import PostgresToS3StreamOperator, S3ZipVerifyOperator

BUCKET = os.environ["S3STREAM_UI_BUCKET"]

with DAG("s3stream_ui_e2e", schedule=None, catchup=False):
    S3ZipVerifyOperator(task_id="verify", s3_bucket=BUCKET, s3_key="bags/acc17.zip", mode="bagit")
    PostgresToS3StreamOperator(
        task_id="export",
        sql="SELECT g AS id, 'name ' || g AS name FROM generate_series(1, 3000) AS g",
        s3_bucket=BUCKET,
        s3_key="exports/ui",
        compression="gzip",
        max_rows_per_file=1000,
        write_manifest=True,
    )
'''


@dataclass(frozen=True)
class Deployment:
    stack: AirflowStack
    bucket: str
    run_id: str
    tokens: dict[str, str]

    def page(self, route: str, **params: Any) -> str:
        return f"{self.stack.base_url}/s3stream/{route}?{urllib.parse.urlencode(params)}"


def _require_chromium() -> None:
    if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
        pytest.fail("Debian's chromium is not installed: apt-get install chromium (the UI e2e test needs it)")


def _login(base_url: str, user: str) -> str:
    response = httpx.post(f"{base_url}/auth/token", json={"username": user, "password": PASSWORDS[user]}, timeout=30)
    assert response.status_code == 201, f"login of {user}: {response.status_code} {response.text}"
    return str(response.json()["access_token"])


@pytest.fixture(scope="module")
def deployment(
    airflow_connections: dict[str, str],
    s3_client: Any,
    migrated_airflow_db: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    """A real deployment with the plugin (installed with the package), two users, and one run of
    the DAG over a tampered bag and a small export; stopped (whole process group) afterwards."""
    _require_chromium()
    root = Path(tempfile.mkdtemp(prefix="s3stream-e2e-ui-"))
    dags = root / "dags"
    dags.mkdir()
    (dags / "ui_e2e.py").write_text(DAG_SOURCE)
    passwords = root / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    with devservices.throwaway_bucket(s3_client, "ui") as bucket:
        bag_dir = make_bag(
            tmp_path_factory.mktemp("bag"),
            {"report.csv": b"a,b\n1,2\n", "img/scan.tif": b"\x49\x49\x2a\x00" + b"\x01" * 4000},
            name="acc17",
        )
        (bag_dir / "data" / "img" / "scan.tif").write_bytes(b"\x49\x49\x2a\x00" + b"\x02" * 4000)  # same size
        s3_client.put_object(Bucket=bucket, Key="bags/acc17.zip", Body=zip_dir(bag_dir))
        stack = AirflowStack(
            root / "home",
            dags,
            extra_env={**airflow_connections, "S3STREAM_UI_BUCKET": bucket},
            metadata_template=migrated_airflow_db,
            config={
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,outsider:",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            },
        )
        try:
            stack.start()
            tokens = {user: _login(stack.base_url, user) for user in PASSWORDS}
            stack._token = tokens["admin"]  # the stack's REST helpers log in as the admin
            stack.wait_for_dag(DAG_ID)
            stack.unpause(DAG_ID)
            run = stack.api("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None})
            stack.wait_for_run(DAG_ID, run["dag_run_id"])
            yield Deployment(stack, bucket, run["dag_run_id"], tokens)
        finally:
            stack.stop()
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def browser() -> Iterator[Browser]:
    _require_chromium()
    with chromium() as opened:
        yield opened


def _sign_in(browser: Browser, deployment: Deployment, user: str) -> None:
    """Give the browser the UI's session cookie for ``user``, as Airflow's login page sets it."""
    browser.call("Network.enable")
    browser.call("Network.clearBrowserCookies")
    browser.call("Network.setCookie", name="_token", value=deployment.tokens[user], url=deployment.stack.base_url)


def _visible_text(
    browser: Browser, url: str, expect: str | None = None, timeout_s: float = 20, *, frame: bool = False
) -> str:
    """The page's visible text (``frame``: that of its first iframe, same origin), once ``expect`` shows."""
    browser.open(url, settle_s=0.5)
    deadline = time.monotonic() + timeout_s
    text = ""
    doc = "(document.querySelector('iframe') || {}).contentDocument" if frame else "document"
    while time.monotonic() < deadline:
        text = str(
            browser.evaluate(f"(() => {{ const d = {doc}; return d && d.body ? d.body.innerText : ''; }})()") or ""
        )
        if text and (expect is None or expect in text):
            break
        time.sleep(0.5)
    return text


def test_the_verification_view_of_a_tampered_bag_names_the_member(deployment: Deployment, browser: Browser) -> None:
    task = deployment.stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{deployment.run_id}/taskInstances/verify")
    assert task["state"] == "failed", "the tampered bag must fail its verification task"
    _sign_in(browser, deployment, "admin")

    text = _visible_text(
        browser, deployment.page("ti", dag_id=DAG_ID, run_id=deployment.run_id, task_id="verify"), TAMPERED_MEMBER
    )

    assert "INVALID: 2 errors" in text, text  # the member's sha256 and sha512 both differ
    assert TAMPERED_MEMBER in text, text
    assert "mismatch" in text.lower(), text
    # Where a user meets it: the plugin's tab of the task instance in Airflow's own UI (an iframe).
    quoted = urllib.parse.quote(deployment.run_id, safe="")
    tab = f"{deployment.stack.base_url}/dags/{DAG_ID}/runs/{quoted}/tasks/verify/plugin/s3stream-result"
    in_ui = _visible_text(browser, tab, TAMPERED_MEMBER, timeout_s=60, frame=True)
    assert TAMPERED_MEMBER in in_ui, in_ui


def test_the_export_view_lists_the_manifests_files(deployment: Deployment, browser: Browser, s3_client: Any) -> None:
    manifest = json.loads(
        s3_client.get_object(Bucket=deployment.bucket, Key="exports/ui/_manifest.json")["Body"].read()
    )
    keys = [entry["key"] for entry in manifest["files"]]
    assert len(keys) == 3
    _sign_in(browser, deployment, "admin")

    text = _visible_text(
        browser, deployment.page("ti", dag_id=DAG_ID, run_id=deployment.run_id, task_id="export"), keys[-1]
    )

    for entry in manifest["files"]:
        assert entry["key"] in text, text
        assert entry["checksum"]["value"] in text, text
    assert "exports/ui/_manifest.json" in text
    # The preview link of the first file opens its first rows.
    preview = _visible_text(
        browser,
        deployment.page("preview", dag_id=DAG_ID, run_id=deployment.run_id, task_id="export", key=keys[0]),
        "name 1",
    )
    assert "id\tname" in preview and "name 1" in preview, preview


def test_a_user_without_access_is_refused_and_sees_nothing_of_the_dag(deployment: Deployment, browser: Browser) -> None:
    url = deployment.page("ti", dag_id=DAG_ID, run_id=deployment.run_id, task_id="verify")
    refused = httpx.get(url, cookies={"_token": deployment.tokens["outsider"]}, timeout=30)
    assert refused.status_code == 403
    anonymous = httpx.get(url, timeout=30)
    assert anonymous.status_code == 401
    _sign_in(browser, deployment, "outsider")

    text = _visible_text(browser, url, "403")
    runs = _visible_text(browser, deployment.page("runs"), "recent runs")

    assert "You do not have access" in text, text
    assert TAMPERED_MEMBER not in text and "acc17" not in text
    assert DAG_ID not in runs, runs
    _sign_in(browser, deployment, "admin")
    assert DAG_ID in _visible_text(browser, deployment.page("runs"), DAG_ID)


def test_the_list_of_runs_filters_by_state_and_dag(deployment: Deployment, browser: Browser) -> None:
    _sign_in(browser, deployment, "admin")

    failed = _visible_text(browser, deployment.page("runs", state="failed"), "invalid")
    succeeded = _visible_text(browser, deployment.page("runs", state="success"), "rows")
    other_dag = _visible_text(browser, deployment.page("runs", dag_id="no_such_dag"), "recent runs")

    assert "verify" in failed and "invalid (2 errors)" in failed and "export" not in failed, failed
    assert "export" in succeeded and "3,000 rows" in succeeded and "verify" not in succeeded, succeeded
    assert "none" in other_dag and "verify" not in other_dag, other_dag
