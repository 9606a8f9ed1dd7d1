"""The Lab extension's JSON handlers under ``/mm4watch/api/`` and its one watcher.

Every handler is Jupyter's ``APIHandler`` behind ``tornado.web.authenticated`` (the server's token
or password; XSRF for what changes something). The project is the one the server runs in (its
``root_dir``, or the nearest folder above with an mm4.toml); a notebook path or a run id from the
page is checked against it: nothing outside the project's results is served.

    GET  /mm4watch/api/status                 the status snapshot (views/status), or why there is none
    GET  /mm4watch/api/runs?notebook=PATH     that notebook's runs, newest first (limit=N, default 200)
    GET  /mm4watch/api/runs/ID?log_from=N     one run's record and its log from byte N (64 KB at most)
    GET  /mm4watch/api/diff?a=ID&b=ID         two runs compared (mm4watch diff, as data and as its lines)
    POST /mm4watch/api/runs                   queue a run: {"notebook", "executor"?, "parameters"?, "lines"?}
    POST /mm4watch/api/runs/ID/cancel         stop a run (what it wrote is kept)
    POST /mm4watch/api/runs/ID/rerun          run its exact input again (mm4watch rerun)
    POST /mm4watch/api/daemon/start           start the watch daemon
    GET  /mm4watch/api/events                 server-sent events: "change" when the project's state moved
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import tornado.iostream
import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from ..core import config
from ..core.errors import Mm4Error
from ..results.records import LOG_NAME, RECORD_NAME, read_record
from . import data
from .events import Watcher

RERUN_LOG = "lab-reruns.log"  # in the state folder: what reruns started from the page printed
RUN_ID = r"[^/\\\x00]+"  # one path segment: checked again against the results folder


class _Base(APIHandler):
    @property
    def root(self) -> Path:
        return Path(self.settings["mm4watch_root"])

    def place(self) -> config.Place:
        """The project the server runs in; a 404 that says why when there is none."""
        root, file = config.find_root(self.root)
        if file is None:
            raise tornado.web.HTTPError(
                404, reason=f"not an mm4watch project: no mm4.toml in {self.root} or above (`mm4watch init` makes one)"
            )
        return config.locate(root)

    def answer(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body, default=str))

    def run_dir(self, place: config.Place, run_id: str) -> Path:
        """The run's folder, only when it is a folder right inside the project's results."""
        results = place.results_dir.resolve()
        folder = (results / run_id).resolve()
        if folder.parent != results or not (folder / RECORD_NAME).is_file():
            raise tornado.web.HTTPError(404, reason=f"no run {run_id!r} in {place.results_dir}")
        return folder

    def notebook(self, place: config.Place, given: str) -> str:
        """A notebook path from the page (relative to the server's folder), as the project names it."""
        path = (self.root / given).resolve()
        root = place.root.resolve()
        if not given or given.startswith("/") or ".." in Path(given).parts or root not in path.parents:
            raise tornado.web.HTTPError(400, reason=f"{given!r} is not a notebook inside the project {place.root}")
        return path.relative_to(root).as_posix()

    def body(self) -> dict[str, Any]:
        try:
            found = json.loads(self.request.body or b"{}")
        except ValueError:
            raise tornado.web.HTTPError(400, reason="the request's body is not JSON") from None
        if not isinstance(found, dict):
            raise tornado.web.HTTPError(400, reason="the request's body is not a JSON object")
        return found


class StatusHandler(_Base):
    @tornado.web.authenticated
    def get(self) -> None:
        from ..views.status import snapshot

        place = self.place()
        self.answer({**data.status(snapshot(place)), **data.project(place, self.root)})


class RunsHandler(_Base):
    @tornado.web.authenticated
    def get(self) -> None:
        from ..results.store import History

        place = self.place()
        notebook = self.notebook(place, self.get_argument("notebook", ""))
        try:
            limit = max(1, min(10_000, int(self.get_argument("limit", "200"))))
        except ValueError:
            raise tornado.web.HTTPError(400, reason="limit is not a whole number") from None
        history = History(place.results_dir, place.state_dir)  # a malformed run.json is skipped, with a warning
        runs = history.query(notebook=history.notebook_path(notebook) or notebook, limit=limit)
        self.answer({"notebook": notebook, **data.tag(place.root / notebook, notebook),
                     "runs": [data.run(r, data.folder(place, r.id, self.root)) for r in runs]})  # fmt: skip

    @tornado.web.authenticated
    def post(self) -> None:
        from ..queue import intake
        from ..queue.active import nudge, read_info

        place = self.place()
        if place.error is not None:
            raise tornado.web.HTTPError(409, reason=str(place.error))
        asked = self.body()
        rel = self.notebook(place, str(asked.get("notebook", "")))
        parameters = asked.get("parameters") or {}
        if not isinstance(parameters, dict) or not all(isinstance(k, str) and k.isidentifier() for k in parameters):
            raise tornado.web.HTTPError(400, reason="parameters: an object of Python names to values")
        try:
            parameters = {**parameters, **data.parameter_lines(asked.get("lines") or [])}
        except Mm4Error as exc:
            raise tornado.web.HTTPError(400, reason=str(exc)) from None
        cfg = config.load(place.root)
        path = cfg.root / rel
        if path.suffix != ".ipynb" or not path.is_file():
            raise tornado.web.HTTPError(404, reason=f"no notebook {rel} in the project")
        try:
            executor = cfg.executor(asked.get("executor") or None).name
            added = intake.request(
                cfg, rel, "manual", content=path.read_bytes(), parameters=parameters, executor=executor
            )
        except Mm4Error as exc:
            raise tornado.web.HTTPError(400, reason=str(exc)) from None
        if read_info(cfg.state_dir):
            nudge(cfg.state_dir)
        merged = added.merged_into
        self.answer({"entry": added.id, "merged_into": merged.id if merged else None, "executor": executor}, status=201)


class RunHandler(_Base):
    @tornado.web.authenticated
    def get(self, run_id: str) -> None:
        place = self.place()
        folder = self.run_dir(place, run_id)
        try:
            record = read_record(folder)
        except (OSError, ValueError) as exc:
            raise tornado.web.HTTPError(422, reason=f"{folder / RECORD_NAME} cannot be read: {exc}") from None
        try:
            start = max(0, int(self.get_argument("log_from", "0")))
        except ValueError:
            raise tornado.web.HTTPError(400, reason="log_from is not a whole number") from None
        chunk = b""
        try:
            with open(folder / LOG_NAME, "rb") as fh:
                fh.seek(start)
                chunk = fh.read(data.LOG_CHUNK)
        except OSError:
            pass
        self.answer({"run": data.run(record, data.folder(place, record.id, self.root)), "record": record.to_dict(), "log": chunk.decode(errors="replace"),
                     "log_next": start + len(chunk)})  # fmt: skip


class DiffHandler(_Base):
    @tornado.web.authenticated
    def get(self) -> None:
        from ..results.compare import compare, source_diff
        from ..views.diff import lines

        place = self.place()
        folders = [self.run_dir(place, self.get_argument(side, "")) for side in ("a", "b")]
        try:
            a, b = (read_record(folder) for folder in folders)
        except (OSError, ValueError) as exc:
            raise tornado.web.HTTPError(422, reason=f"a run's record cannot be read: {exc}") from None
        found = compare(place.root, a, b, folders[0], folders[1])
        text, tool = source_diff(folders[0], folders[1], use_nbdime=False)
        said = "\n".join(lines(found, tool, text)) + ("\n" + text.rstrip("\n") if text.strip() else "")
        self.answer({**found, "source": {"tool": tool, "diff": text}, "text": said})


class RunActionHandler(_Base):
    @tornado.web.authenticated
    def post(self, run_id: str, action: str) -> None:
        from ..core import proc
        from ..queue import active

        place = self.place()
        folder = self.run_dir(place, run_id)
        if action == "cancel":
            pid = active.request_cancel(place.state_dir, folder.name)
            if pid is None:
                raise tornado.web.HTTPError(409, reason=f"{folder.name} is not running here")
            self.answer({"cancelling": folder.name, "pid": pid}, status=202)
        else:  # rerun: checked here (a refusal says why), then its own process, as `mm4watch rerun`
            from ..run.again import request

            try:
                request(config.load(place.root), read_record(folder), folder)
            except (Mm4Error, OSError, ValueError) as exc:
                raise tornado.web.HTTPError(409, reason=str(exc)) from None
            place.state_dir.mkdir(parents=True, exist_ok=True)
            with open(place.state_dir / RERUN_LOG, "ab") as said:  # what it printed, if it fails later
                proc.detach(proc.command("rerun", folder.name), cwd=place.root, stdout=said)
            self.answer({"rerunning": folder.name}, status=202)


class DaemonHandler(_Base):
    @tornado.web.authenticated
    def post(self) -> None:
        from ..core import proc

        place = self.place()
        done = proc.run(proc.command("start"), cwd=place.root, check=False, timeout=120)
        said = (done.stdout or done.stderr).decode(errors="replace").strip()
        self.answer({"started": done.returncode == 0, "said": said}, status=200 if done.returncode == 0 else 409)


class EventsHandler(_Base):
    """Server-sent events: ``change`` (with what moved) each time the watcher sees the project's state move."""

    queue: asyncio.Queue[dict[str, Any]] | None = None

    @tornado.web.authenticated
    async def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        watcher: Watcher = self.settings["mm4watch_watcher"]
        queue = self.queue = watcher.subscribe()
        try:
            self.write("retry: 2000\n\n")
            await self.flush()
            while True:
                change = await queue.get()
                if change.get("closed"):
                    break
                self.write(f"event: change\ndata: {json.dumps(change)}\n\n")
                await self.flush()
        except (tornado.iostream.StreamClosedError, asyncio.CancelledError):
            pass
        finally:
            watcher.unsubscribe(queue)

    def on_connection_close(self) -> None:
        """The page went away: its stream ends now, not at the next change."""
        if self.queue is not None:
            if self.queue.full():
                self.queue.get_nowait()
            self.queue.put_nowait({"closed": True})


def setup(serverapp: Any) -> None:
    web_app = serverapp.web_app
    root = Path(serverapp.root_dir).expanduser().resolve()
    web_app.settings["mm4watch_root"] = str(root)
    web_app.settings["mm4watch_watcher"] = Watcher(root)
    base = url_path_join(web_app.settings["base_url"], "mm4watch", "api")
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "status"), StatusHandler),
            (url_path_join(base, "runs"), RunsHandler),
            (url_path_join(base, "runs", f"({RUN_ID})"), RunHandler),
            (url_path_join(base, "runs", f"({RUN_ID})", "(cancel|rerun)"), RunActionHandler),
            (url_path_join(base, "diff"), DiffHandler),
            (url_path_join(base, "daemon", "start"), DaemonHandler),
            (url_path_join(base, "events"), EventsHandler),
        ],
    )
    serverapp.log.info("mm4watch: /mm4watch/api/ serves the project of %s", root)
