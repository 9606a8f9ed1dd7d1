"""The runner: one notebook through papermill, in a process of its own, on the machine that runs it.

Started by every executor (on this machine, in a container, on the Mini) as
``python -m mm4watch.far.runner SPEC.json``, or with
``--warm JOB_DIR IDLE_S`` to start a kernel first and wait for the job. A crashed kernel or
a ``sys.exit`` in the notebook ends here, never in mm4watch. SIGTERM stops the
run the way ^C would, so papermill still writes the executed notebook.
Writes ``result`` (JSON: status and error) and exits 0 on success, 1 otherwise.

Part of the far side (``executors.far_side.FAR_SIDE``): Python 3.9 and newer, papermill, nothing of mm4watch
but the far side's own files.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import signal
import sys
import time
import traceback
from typing import Any

from . import environment


def _stop(signum: int, frame: object) -> None:
    # the kernel goes first: stopped while papermill winds down, it would try to answer on closed
    # sockets and fill run.log with zmq tracebacks; what ran is saved from papermill's side anyway
    try:
        import psutil

        for child in psutil.Process().children(recursive=True):
            try:
                child.kill()
            except psutil.Error:
                pass
    except ImportError:
        pass
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def _source_index(input_path: str, source: str | None) -> int | None:
    """Index of the failing cell in the notebook as the user wrote it."""
    if source is None:
        return None
    try:
        with open(input_path, encoding="utf-8") as fh:
            cells = json.load(fh)["cells"]
    except (OSError, ValueError, KeyError):
        return None
    for index, cell in enumerate(cells):
        text = cell.get("source", "")
        if ("".join(text) if isinstance(text, list) else text) == source:
            return index
    return None


def _last_started_cell(output_path: str) -> str | None:
    """Source of the last cell papermill started, from the saved output notebook.

    After an interruption papermill marks every cell 'completed'; the cell that
    was executing is the last one with a start time.
    """
    try:
        with open(output_path, encoding="utf-8") as fh:
            cells = json.load(fh)["cells"]
    except (OSError, ValueError, KeyError):
        return None
    source = None
    for cell in cells:
        if cell.get("metadata", {}).get("papermill", {}).get("start_time"):
            text = cell.get("source", "")
            source = "".join(text) if isinstance(text, list) else text
    return source


WARM_KERNEL = "python3"  # a warm container starts the image's default kernel
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_IPY8_CELL = re.compile(r"Cell In\[(\d*)\], line (\d+)")  # IPython 8: "Cell In[3], line 3"
_IPY7_ARROW = re.compile(r"^-+> (\d+)", re.MULTILINE)  # older: "----> 3 x = 1 / 0"


def plain_traceback(lines: list[str]) -> list[str]:
    """A kernel's traceback without its colours."""
    return _ANSI.sub("", "\n".join(lines)).splitlines()


def _where(input_path: str, cell: int | None, exec_count: int | None, traceback: list[str]) -> dict[str, Any]:
    """Where a failure is, as Jupyter shows it: the code cell's number among code cells (from 1;
    papermill's injected parameters cell is not in the user's notebook, so never counted) and the
    line inside that cell."""
    found: dict[str, Any] = {"code_cell": None, "line": None}
    if cell is not None:
        try:
            with open(input_path, encoding="utf-8") as fh:
                cells = json.load(fh)["cells"]
            found["code_cell"] = sum(1 for c in cells[: cell + 1] if c.get("cell_type") == "code")
        except (OSError, ValueError, KeyError):
            pass
    text = "\n".join(traceback)
    lines = [(m.group(1), int(m.group(2))) for m in _IPY8_CELL.finditer(text)]
    mine = [line for count, line in lines if exec_count is not None and count == str(exec_count)]
    arrow = _IPY7_ARROW.search(text)
    if mine:
        found["line"] = mine[0]
    elif lines:
        found["line"] = lines[0][1]
    elif arrow:
        found["line"] = int(arrow.group(1))
    return found


def _kernel_of(input_path: str) -> str | None:
    try:
        with open(input_path, encoding="utf-8") as fh:
            return json.load(fh).get("metadata", {}).get("kernelspec", {}).get("name")
    except (OSError, ValueError, AttributeError):
        return None


# A kernel that does not start: it died ("died before replying"), or it hangs without answering ("didn't
# respond"): a port another process took between jupyter_client's pick and the kernel's bind leaves
# ipykernel's process up but deaf. Started again once, on new ports: a slow machine gets a second minute.
KERNEL_NOT_STARTED = ("Kernel died before replying to kernel_info", "Kernel didn't respond in")
KERNEL_START_S = 60


def run(spec: dict[str, Any], km: Any = None) -> dict[str, Any]:
    from ..core.lean_imports import papermill as lean_papermill

    papermill = lean_papermill()
    _write_whole(spec["output"])

    kernel = spec.get("kernel") or _kernel_of(spec["input"]) or "python3"
    extra = {"km": km} if km is not None else {}
    probe = environment.start(kernel, os.path.dirname(spec["result"])) if spec.get("environment", True) else None
    try:
        result = _execute(papermill, spec, kernel, extra, km)
    except BaseException:
        environment.finish(probe, 0)
        raise
    environment.finish(probe, 5 if result["status"] == "interrupted" else environment.WAIT_S)  # stopped: soon
    return result


def _execute(papermill: Any, spec: dict[str, Any], kernel: str, extra: dict[str, Any], km: Any) -> dict[str, Any]:
    from papermill.exceptions import PapermillExecutionError

    cwd = spec.get("cwd")
    if cwd:
        os.makedirs(cwd, exist_ok=True)
        # an image that copies no project files (the code comes from the image, not from a copy
        # mm4watch sent, whose notebook folder may well be empty: notebooks are not sent as code)
        if spec.get("code_from_image") and not os.listdir(cwd):
            print(
                f"mm4watch: the run's folder {cwd} is empty here: the image holds no project files there. "
                "If the notebook needs the project's code, copy it in the Dockerfile (COPY . /project)",
                file=sys.stderr,
            )
    try:
        for attempt in (1, 2):
            try:
                papermill.execute_notebook(
                    spec["input"],
                    spec["output"],
                    parameters=spec.get("parameters") or {},
                    cwd=spec.get("cwd"),
                    kernel_name=kernel,
                    log_output=True,
                    progress_bar=False,
                    request_save_on_cell_execute=True,
                    start_timeout=KERNEL_START_S,
                    **extra,
                )
                break
            except RuntimeError as exc:
                # jupyter_client picks the kernel's ports free, then the kernel binds them: another process
                # may take one meanwhile ("Address already in use"), and the kernel dies before any cell ran
                if attempt == 2 or km is not None or not any(said in str(exc) for said in KERNEL_NOT_STARTED):
                    raise
                print(f"mm4watch: the kernel did not start ({exc}); starting it again, once", file=sys.stderr)
        return {"status": "succeeded", "error": None}
    except PapermillExecutionError as exc:
        cell = _source_index(spec["input"], exc.source)
        tb = plain_traceback(list(exc.traceback or []))
        print("\n".join(tb), file=sys.stderr)  # into run.log, where `logs` and `show` find it
        error = {
            "cell": cell,
            **_where(spec["input"], cell, exc.exec_count, tb),
            "execution_count": exc.exec_count,
            "ename": exc.ename,
            "evalue": exc.evalue,
            "traceback": tb,
        }
        if exc.ename == "OSError" and f"[Errno {errno.ENOSPC}]" in str(exc.evalue):  # the notebook's own write
            error.update(disk_full(os.path.dirname(spec["result"])))
        return {"status": "failed", "error": error}
    except KeyboardInterrupt as exc:
        return {
            "status": "interrupted",
            "error": {
                "cell": _source_index(spec["input"], _last_started_cell(spec["output"])),
                "ename": "KeyboardInterrupt",
                "evalue": str(exc),
            },
        }
    except Exception as exc:  # a dead kernel, a missing kernel, a bad parameter, a full disk...
        traceback.print_exc()
        error = {
            "cell": _source_index(spec["input"], _last_started_cell(spec["output"])),
            "ename": type(exc).__name__,
            "evalue": str(exc),
        }
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            error.update(disk_full(os.path.dirname(spec["output"])))
        return {"status": "failed", "error": error}


def _write_whole(output: str) -> None:
    """papermill saves the executed notebook after each cell: here to a file beside it, renamed over it,
    so a save that fails (a full disk) leaves the last whole one, never a truncated file."""
    from papermill.iorw import LocalHandler, papermill_io

    class Whole(LocalHandler):
        def write(self, buf: str, path: str) -> None:
            part = path + ".part"
            try:
                with open(part, "w", encoding="utf-8") as fh:
                    fh.write(buf)
                os.replace(part, path)
            except OSError:
                try:
                    os.unlink(part)
                except OSError:
                    pass
                raise

    papermill_io.register(output, Whole())  # this path alone; papermill asks the newest handler first


def disk_full(folder: str) -> dict[str, Any]:
    """What a record says of a full disk: the free space where the run writes, in MB."""
    try:
        st = os.statvfs(folder)
        free = st.f_bavail * st.f_frsize
    except OSError:
        free = 0
    return {"ename": "DiskFull", "disk_full": {"free_mb": round(free / 1e6, 1), "path": folder}}


def _write_result(spec: dict[str, Any], result: dict[str, Any]) -> int:
    tmp = spec["result"] + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(result, fh)
        os.replace(tmp, spec["result"])
    except OSError as exc:  # a full disk takes even this small file: the executor finds no result, and says why
        print(f"mm4watch: the run's result could not be written: {exc}", file=sys.stderr)
    return 0 if result["status"] == "succeeded" else 1


def warm(job_dir: str, idle_s: float) -> int:
    """Start a kernel now, run the job that arrives later on it.

    The container is started before any run needs it, with papermill imported
    and the kernel up and ready; a run then only delivers ``spec.json``, the
    notebook and, last, ``go``. Waits ``idle_s`` at most, then exits unused.
    """
    import asyncio

    from jupyter_client.manager import AsyncKernelManager

    from ..core.lean_imports import papermill

    papermill()  # imported now, before the job arrives: that is the point
    km = AsyncKernelManager(kernel_name=WARM_KERNEL)
    asyncio.run(_wait(km.start_kernel()))
    asyncio.run(_kernel_call(km, None))
    go = os.path.join(job_dir, "go")
    deadline = time.monotonic() + idle_s
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            asyncio.run(_wait(km.shutdown_kernel(now=True)))
            return 0
        time.sleep(0.02)
    with open(os.path.join(job_dir, "spec.json"), encoding="utf-8") as fh:
        spec = json.load(fh)
    wanted = spec.get("kernel") or _kernel_of(spec["input"]) or "python3"
    if wanted != WARM_KERNEL or not asyncio.run(_wait(km.is_alive())):
        asyncio.run(_wait(km.shutdown_kernel(now=True)))
        return _write_result(spec, run(spec))
    # what a cold start would have given the kernel: its folder and the run's variables
    setup = f"import os as _o; _o.chdir({spec['cwd']!r}); _o.environ.update({spec.get('env') or {}!r}); del _o"
    asyncio.run(_kernel_call(km, setup))
    return _write_result(spec, run(spec, km=km))


async def _wait(awaitable: Any) -> Any:
    return await awaitable


async def _kernel_call(km: Any, code: str | None) -> None:
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=120)
        if code:
            await kc.execute_interactive(code, silent=True, store_history=False, timeout=60)
    finally:
        kc.stop_channels()


def _one_newline(record: logging.LogRecord) -> bool:
    if isinstance(record.msg, str) and record.msg.endswith("\n") and not record.args:
        record.msg = record.msg[:-1]
    return True


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _stop)
    # papermill logs each cell and its outputs at INFO: that is what run.log shows. An output
    # chunk carries its own newline; the log line adds one: drop the first, or lines come double-spaced
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_one_newline)
    if argv[0] == "--warm":
        return warm(argv[1], float(argv[2]))
    with open(argv[0], encoding="utf-8") as fh:
        spec = json.load(fh)
    os.environ.update(spec.get("env") or {})  # the kernel inherits them
    return _write_result(spec, run(spec))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
