"""raydal against a real Label Studio (marked ``labelstudio``: outside the default suite).

Run: ``bash scripts/test.sh -m labelstudio tests/al/test_labelstudio_server.py``

Installs ``label-studio`` into its own venv ($RAYDAL_LS_VENV, default
/tmp/ls-venv; ~1 GB, a few minutes, from PyPI) unless it is there, starts it
on 127.0.0.1 with a throwaway data dir and an admin from LABEL_STUDIO_USERNAME /
LABEL_STUDIO_PASSWORD (generated when unset), logs in with a session (Label
Studio 1.23 disables legacy API tokens), and drives it through its API: a
project from raydal's config, raydal's tasks imported, every image checked,
annotations made, the project exported as JSON, JSON_MIN and CSV, each export
imported into raydal; and the live link (raydal.al.lssync, through
label_studio_sdk with a personal access token) pushes and pulls a batch once.
The server is stopped by its PID at the end.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from labeling_state import make_waiting_state, state_files
from PIL import Image
from support import free_port

from raydal.al.humanloop import ExportOptions, export_batch, import_labels
from raydal.al.state import StateStore
from raydal.exceptions import LabelImportError

pytestmark = [pytest.mark.labelstudio, pytest.mark.timeout(3600)]  # a first run installs Label Studio
requests = pytest.importorskip("requests")

LS_SPEC = os.environ.get("RAYDAL_LS_SPEC", "label-studio>=1.23,<2")
LS_VENV = Path(os.environ.get("RAYDAL_LS_VENV", "/tmp/ls-venv"))
HEALTH_TIMEOUT_S = 900  # a fresh data dir runs every migration: ~90 s alone, minutes on a busy 2-core box
NATIVE, SHARD = 48, 32  # archive images and shard size: thumbnails must be the former


def _label_studio() -> Path:
    exe = LS_VENV / "bin" / "label-studio"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(LS_VENV)], check=True)
        subprocess.run([str(LS_VENV / "bin" / "pip"), "install", "-q", LS_SPEC], check=True, timeout=3600)
    return exe


class LabelStudio:
    """A session on a running Label Studio: form login, then the CSRF token on API calls."""

    def __init__(self, base: str, email: str, password: str):
        self.base = base
        self.http = requests.Session()
        page = self.http.get(f"{base}/user/login/", timeout=60)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        done = self.http.post(
            f"{base}/user/login/",
            data={"email": email, "password": password, "csrfmiddlewaretoken": token},
            headers={"Referer": f"{base}/user/login/"},
            allow_redirects=False,
            timeout=60,
        )
        assert done.status_code == 302, f"login failed: {done.status_code} {done.text[:300]}"
        self.http.headers.update({"X-CSRFToken": self.http.cookies["csrftoken"], "Referer": f"{base}/"})

    def __call__(self, method: str, path: str, **kw):
        response = self.http.request(method, self.base + path, timeout=120, **kw)
        assert response.ok, f"{method} {path}: {response.status_code} {response.text[:500]}"
        return response

    def project(self, title: str, export: Path) -> int:
        config = (export / "label_studio_config.xml").read_text()
        pid = self("POST", "/api/projects", json={"title": title, "label_config": config}).json()["id"]
        return pid

    def import_tasks(self, pid: int, export: Path) -> list[dict]:
        tasks = json.loads((export / "label_studio_tasks.json").read_text())
        assert self("POST", f"/api/projects/{pid}/import", json=tasks).json()["task_count"] == len(tasks)
        stored = self("GET", "/api/tasks", params={"project": pid, "page_size": 1000}).json()["tasks"]
        return sorted(stored, key=lambda t: t["id"])

    def annotate(self, task_id: int, choices: list[str] | None) -> int:
        """A submitted annotation (None: the annotator skips the task); returns its id."""
        body = {
            "result": []
            if choices is None
            else [{"from_name": "labels", "to_name": "image", "type": "choices", "value": {"choices": choices}}],
            "was_cancelled": choices is None,
        }
        return self("POST", f"/api/tasks/{task_id}/annotations", json=body).json()["id"]

    def export(self, pid: int, fmt: str, out: Path) -> Path:
        data = self(
            "GET", f"/api/projects/{pid}/export", params={"exportType": fmt, "download_all_tasks": "true"}
        ).content
        out.write_bytes(data)
        return out


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    exe = _label_studio()
    tmp = tmp_path_factory.mktemp("label-studio")
    root = tmp / "document-root"
    root.mkdir()
    email = os.environ.get("LABEL_STUDIO_USERNAME", "raydal-test@example.com")
    password = os.environ.get("LABEL_STUDIO_PASSWORD", secrets.token_urlsafe(16))
    port = free_port()
    env = {
        **os.environ,
        "LABEL_STUDIO_USERNAME": email,
        "LABEL_STUDIO_PASSWORD": password,
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(root),
    }
    log = open(tmp / "label-studio.log", "wb")
    server = subprocess.Popen(
        [
            str(exe),
            "start",
            "--no-browser",
            "--internal-host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(tmp / "data"),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while True:
            assert server.poll() is None, f"Label Studio exited: {(tmp / 'label-studio.log').read_text()[-3000:]}"
            try:
                if requests.get(f"{base}/health", timeout=5).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "Label Studio did not answer /health in time"
            time.sleep(2)
        yield LabelStudio(base, email, password), root
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # its own session: the server and what it started
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(30)
        log.close()


@pytest.fixture
def waiting(tmp_path):
    """A state waiting for 5 labels, on an archive of 48 px images packed at 32 px."""
    from raydal.data.shards import prepare
    from raydal.data.synth import synthesize

    synthesize("ucmerced", tmp_path / "archive", n=60, size=NATIVE, seed=0)
    prepare("ucmerced", tmp_path / "archive", tmp_path / "shards", size=SHARD, seed=0, shard_size=32)
    return make_waiting_state(tmp_path / "shards", tmp_path / "state")


def _copy_state(info: dict, name: str, tmp: Path) -> str:
    target = tmp / name
    shutil.copytree(info["state_dir"], target)
    return str(target)


def test_label_studio_round_trip(label_studio, waiting, tmp_path):
    ls, root = label_studio
    classes = waiting["classes"]

    # -- images: inlined thumbnails are stored intact and decode as native-size PNGs
    inline = export_batch(waiting["state_dir"], str(tmp_path / "export"))
    pid = ls.project("raydal inline", inline)
    stored = ls.import_tasks(pid, inline)
    ours = json.loads((inline / "label_studio_tasks.json").read_text())
    assert [t["data"] for t in stored] == [t["data"] for t in ours]
    for task in stored:
        png = base64.b64decode(task["data"]["image"].split(",", 1)[1])
        image = Image.open(io.BytesIO(png))
        assert image.format == "PNG" and image.size == (NATIVE, NATIVE)

    # -- images: the local-files route serves every thumbnail over HTTP
    local = export_batch(
        waiting["state_dir"], str(root / "export"), ExportOptions(images="local-files", document_root=str(root))
    )
    lpid = ls.project("raydal local files", local)
    ls(
        "POST",
        "/api/storages/localfiles",
        json={"project": lpid, "path": str(local / "thumbs"), "title": "raydal thumbnails", "use_blob_urls": False},
    )
    for task in ls.import_tasks(lpid, local):
        url = task["data"]["image"]
        assert url.startswith("/data/local-files/?d=")
        got = ls("GET", url)
        assert got.status_code == 200 and got.headers["content-type"].startswith("image/")
        assert got.content == (local / "thumbs" / url.rsplit("/", 1)[1]).read_bytes()

    # -- annotate: several classes, one class, a skip; two tasks left unannotated
    tid = {t["data"]["raydal_id"]: t["id"] for t in stored}
    sids = waiting["pending"]
    given = {sids[0]: [classes[0], classes[12]], sids[1]: [classes[15]]}
    first_annotation = ls.annotate(tid[sids[0]], given[sids[0]])
    ls.annotate(tid[sids[1]], given[sids[1]])
    ls.annotate(tid[sids[2]], None)

    # -- each export format imports into raydal with the same result
    for fmt in ("JSON", "JSON_MIN", "CSV"):
        state_dir = _copy_state(waiting, f"state-{fmt}", tmp_path)
        result = import_labels(state_dir, ls.export(pid, fmt, tmp_path / f"partial.{fmt.lower()}"))
        # JSON names the skipped task: it is marked unlabelable and leaves the batch
        assert result["imported"] == 2 and result["remaining"] == (2 if fmt == "JSON" else 3), (fmt, result)
        human = StateStore(state_dir).load().human_labels
        assert {s: [classes[c] for c in human[s]] for s in given} == given
        unanswered = result["unannotated"] + result["skipped"]
        assert all(any(repr(s) in u for u in unanswered) for s in sids[3:]), result
        if fmt == "JSON":
            assert any(f"task {tid[sids[2]]}" in s for s in result["skipped"])  # named as skipped
        else:
            assert result["not_in_file"] == [sids[2]]  # JSON_MIN and CSV leave skipped tasks out

    # -- a changed label in a whole-project export is refused, naming the task
    state_dir = str(tmp_path / "state-JSON")
    ls(
        "PATCH",
        f"/api/annotations/{first_annotation}",
        json={
            "result": [
                {"from_name": "labels", "to_name": "image", "type": "choices", "value": {"choices": [classes[3]]}}
            ]
        },
    )
    before = state_files(state_dir)
    with pytest.raises(LabelImportError, match=f"task {tid[sids[0]]}.*was imported before"):
        import_labels(state_dir, ls.export(pid, "CSV", tmp_path / "changed.csv"))
    assert state_files(state_dir) == before
    ls(
        "PATCH",
        f"/api/annotations/{first_annotation}",
        json={
            "result": [
                {"from_name": "labels", "to_name": "image", "type": "choices", "value": {"choices": given[sids[0]]}}
            ]
        },
    )

    # -- finish the batch (the skipped task stays unlabelable) and import the whole project again
    for n, sid in enumerate(sids[3:]):
        given[sid] = [classes[n + 1]]
        ls.annotate(tid[sid], given[sid])
    result = import_labels(state_dir, ls.export(pid, "JSON", tmp_path / "whole.json"))
    assert (result["imported"], result["phase"]) == (2, "train"), result
    state = StateStore(state_dir).load()
    assert {s: [classes[c] for c in state.human_labels[s]] for s in given} == given and sids[2] in state.unlabelable


def test_live_link(label_studio, waiting):
    """raydal label-studio's link through label_studio_sdk: a project made from raydal's config, the batch
    pushed once (most uncertain first, hints shown, nothing pre-selected), annotations pulled once."""
    pytest.importorskip("label_studio_sdk")
    from raydal.al.labelstudio import confidence
    from raydal.al.lssync import Link, connect

    ls, _ = label_studio
    token = ls("POST", "/api/token/").json()["token"]  # a personal access token (JWT refresh token)
    sids, truth = waiting["pending"], waiting["truth"]
    link = Link(waiting["state_dir"], connect(ls.base, token), title="raydal live link", export={"predictions": "hint"})
    first = link.sync()
    pid = first["project"]
    project = ls("GET", f"/api/projects/{pid}").json()
    assert first["pushed"] == 5 and project["show_collab_predictions"] is False
    assert 'value="$raydal_hint"' in project["label_config"]

    def stored() -> list[dict]:
        return sorted(
            ls("GET", "/api/tasks", params={"project": pid, "page_size": 1000, "fields": "all"}).json()["tasks"],
            key=lambda t: t["id"],
        )

    tasks = stored()
    probs = StateStore(waiting["state_dir"]).load().pending["probs"]
    assert [t["data"]["raydal_id"] for t in tasks] == sorted(sids, key=lambda s: confidence(probs[s]))
    assert all(t["data"]["raydal_hint"] and not t.get("predictions") for t in tasks)
    assert link.sync()["pushed"] == 0 and len(stored()) == 5  # run twice: nothing pushed twice

    tid = {t["data"]["raydal_id"]: t["id"] for t in tasks}
    for sid in sids[:2]:
        ls.annotate(tid[sid], truth[sid])
    got = link.sync()
    assert (got["imported"]["imported"], got["pending"]) == (2, 3)
    before = state_files(waiting["state_dir"])
    assert link.sync()["imported"] is None and state_files(waiting["state_dir"]) == before  # nothing imported twice
    for sid in sids[2:]:
        ls.annotate(tid[sid], truth[sid])
    assert link.sync()["phase"] == "train"
    human = StateStore(waiting["state_dir"]).load().human_labels
    assert {s: [waiting["classes"][c] for c in human[s]] for s in sids} == {s: truth[s] for s in sids}
