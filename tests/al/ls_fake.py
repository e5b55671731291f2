"""A tiny Label Studio on 127.0.0.1: the endpoints ``label_studio_sdk`` calls for ``raydal label-studio``.

Answers in Label Studio 1.23's shapes (checked against a real server by
test_labelstudio_server.py): ``GET/POST /api/projects/``, ``GET/PATCH
/api/projects/{id}/``, ``POST /api/projects/{id}/import`` (refuses a task
without a data key the labeling config uses, as Label Studio does), ``GET
/api/tasks/`` (paged; a page past the end is a 404). Every request needs
``Authorization: Token <key>``. Annotating is done by the test
(``annotate``, ``edit``), or by ``auto`` (answers each imported task).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from typing import Any
from urllib.parse import parse_qs, urlparse

STAMP = "2026-12-02T10:00:{:02d}.000000Z"


class FakeLabelStudio:
    def __init__(self, api_key: str = "fake-token"):
        self.api_key = api_key
        self.projects: dict[int, dict[str, Any]] = {}
        self.tasks: dict[int, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.auto: Callable[[dict[str, Any]], list[str] | None] | None = None  # task -> choices (None: skip)
        self._ids = count(1)
        self._clock = count(0)
        self._lock = threading.RLock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                fake._serve(self, "GET")

            def do_POST(self):
                fake._serve(self, "POST")

            def do_PATCH(self):
                fake._serve(self, "PATCH")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(0.02,), daemon=True
        )  # poll: quick shutdown

    def __enter__(self) -> "FakeLabelStudio":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- what annotators do --------------------------------------------------
    def annotate(self, task_id: int, choices: list[str] | None, user: int = 1) -> int:
        """A submitted annotation (None: the annotator skips the task); returns its id."""
        with self._lock:
            aid = next(self._ids)
            stamp = STAMP.format(next(self._clock) % 60)
            result = (
                []
                if choices is None
                else [
                    {
                        "id": f"r{aid}",
                        "from_name": "labels",
                        "to_name": "image",
                        "type": "choices",
                        "origin": "manual",
                        "value": {"choices": list(choices)},
                    }
                ]
            )
            self.tasks[task_id]["annotations"].append(
                {
                    "id": aid,
                    "completed_by": user,
                    "result": result,
                    "was_cancelled": choices is None,
                    "ground_truth": False,
                    "created_at": stamp,
                    "updated_at": stamp,
                    "lead_time": 3.0,
                    "task": task_id,
                    "project": self.tasks[task_id]["project"],
                }
            )
            return aid

    def edit(self, annotation_id: int, choices: list[str]) -> None:
        with self._lock:
            for task in self.tasks.values():
                for a in task["annotations"]:
                    if a["id"] == annotation_id:
                        a["result"][0]["value"]["choices"] = list(choices)
                        a["updated_at"] = STAMP.format(next(self._clock) % 60).replace("10:00", "11:00")

    def task_of(self, project: int, raydal_id: str) -> dict[str, Any]:
        return next(t for t in self.tasks.values() if t["project"] == project and t["data"]["raydal_id"] == raydal_id)

    # -- the API -------------------------------------------------------------
    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(h.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.requests.append((method, url.path))
        if h.headers.get("Authorization") != f"Token {self.api_key}":
            return self._send(h, 401, {"detail": "Authentication credentials were not provided."})
        body = json.loads(h.rfile.read(int(h.headers.get("Content-Length") or 0)) or b"null")
        with self._lock:
            status, answer = self._route(method, url.path.rstrip("/"), query, body)
        self._send(h, status, answer)

    def _route(self, method: str, path: str, query: dict, body: Any) -> tuple[int, Any]:
        if path == "/api/projects" and method == "GET":
            found = [p for p in self.projects.values() if query.get("title", "").lower() in p["title"].lower()]
            return self._page(
                found, query, lambda items: {"count": len(found), "next": None, "previous": None, "results": items}
            )
        if path == "/api/projects" and method == "POST":
            pid = next(self._ids)
            self.projects[pid] = {
                "id": pid,
                "title": body.get("title", ""),
                "label_config": body.get("label_config", ""),
                "description": body.get("description", ""),
                "show_collab_predictions": body.get("show_collab_predictions", True),
            }
            return 201, self.projects[pid]
        m = re.fullmatch(r"/api/projects/(\d+)", path)
        if m:
            project = self.projects.get(int(m.group(1)))
            if project is None:
                return 404, {"detail": "Not found."}
            if method == "PATCH":
                project.update({k: v for k, v in body.items() if k in project})
            return 200, project
        m = re.fullmatch(r"/api/projects/(\d+)/import", path)
        if m and method == "POST":
            pid = int(m.group(1))
            keys = set(re.findall(r'value="\$(\w+)"', self.projects[pid]["label_config"]))
            for n, task in enumerate(body):
                if keys - set(task.get("data", {})):
                    return 400, {"detail": f"task {n}: data keys {sorted(keys - set(task['data']))} missing"}
            ids = []
            for task in body:
                tid = next(self._ids)
                self.tasks[tid] = {
                    "id": tid,
                    "project": pid,
                    "data": task["data"],
                    "annotations": [],
                    "predictions": task.get("predictions", []),
                    "meta": task.get("meta", {}),
                }
                ids.append(tid)
            if self.auto:
                for tid in ids:
                    self.annotate(tid, self.auto(self.tasks[tid]))
            answer = {"task_count": len(ids), "annotation_count": 0, "prediction_count": 0}
            if query.get("return_task_ids") == "true":
                answer["task_ids"] = ids
            return 201, answer
        if path == "/api/tasks" and method == "GET":
            found = [t for t in self.tasks.values() if str(t["project"]) == query.get("project")]
            return self._page(found, query, lambda items: {"tasks": items, "total": len(found)})
        return 404, {"detail": f"no route {method} {path}"}

    @staticmethod
    def _page(items: list, query: dict, shape: Callable[[list], dict]) -> tuple[int, Any]:
        page, size = int(query.get("page", 1)), int(query.get("page_size", 30))
        chunk = items[(page - 1) * size : page * size]
        if page > 1 and not chunk:
            return 404, {"detail": "Invalid page."}
        return 200, shape(chunk)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, answer: Any) -> None:
        data = json.dumps(answer).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
