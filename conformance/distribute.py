"""Running many independent tasks: in this process, in a pool of local processes, or on a Dask cluster.

``map_tasks(fn, tasks, jobs=J, scheduler=ADDRESS)`` calls ``fn(task)`` for every task and yields
``(index, result)`` as each one finishes. It is the one executor of ``xent run --scheduler`` and
``xent sweep``; the callers turn each result into their own report and merge them, so the order
in which tasks finish never shows in what they write.

- ``jobs <= 1``, no scheduler: in this process, in order (nothing to pickle; for debugging too).
- ``jobs > 1``: a pool of ``jobs`` local processes started with ``forkserver`` (``spawn`` where
  there is none), the fork server preloading ``fn``'s module so that each worker starts with it
  imported. Never ``fork``: the frameworks the adapters wrap (torch, TensorFlow, JAX) keep threads
  and state that do not survive a fork after they are imported. Measured on the 2-core development
  machine (a parent that imported ``conformance.runner``; 4 tasks that import the oracle, 2
  processes; 3 trials): all results after 0.45-0.62 s with ``spawn``, 0.46-0.62 s with
  ``forkserver``, 0.32-0.46 s with ``forkserver`` preloading the task's module (``fork``: 0.2 s,
  not safe). Workers ignore SIGINT: Ctrl-C reaches this process, which stops the pool (running
  tasks are terminated) and re-raises.
- ``scheduler``: the address of a Dask scheduler (``tcp://host:port``, or anything
  ``distributed.Client`` takes). Dask is imported only then (``pip install 'xent-conformance[dask]'``).
  The workers import ``fn``'s module by name, so they need this project importable, at the same
  version: on one machine (a ``LocalCluster``, or ``dask worker`` started from the project's
  folder or environment) that holds by itself; on other machines install the project and the
  frameworks of the adapters you run (``pip install -e '.[all,dask]'``) in the workers' environment.

In every mode at most a bounded number of tasks is in flight (4 per process or Dask thread, at
least 8), so thousands of tasks cost the memory of a few. ``fn`` must be a picklable top-level
function and every task picklable (the in-process mode needs neither). A task that raises stops
the whole map: outstanding tasks are cancelled and `TaskError` names the task (its index and a
short form of its argument), the exception and, where known, the remote traceback. A task is never
silently lost. An unreachable scheduler or a missing Dask is a `DistributeError` with a one-line
message.
"""
from __future__ import annotations

import signal
from collections.abc import Iterator

CONNECT_TIMEOUT_S = 5.0  # to reach a Dask scheduler
IN_FLIGHT_PER_WORKER = 4
MIN_IN_FLIGHT = 8


class DistributeError(Exception):
    """The tasks could not be run: Dask missing, the scheduler unreachable, a worker pool broken.
    ``str()`` is one line."""


class TaskError(DistributeError):
    """A task raised (or its worker died while running it). ``index`` and ``task`` name it;
    ``traceback`` is the worker's traceback text when one came back."""

    def __init__(self, index: int, task, error: BaseException | str, traceback: str = ""):
        self.index, self.task, self.error, self.traceback = index, task, error, traceback
        what = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        super().__init__(_one_line(f"task {index} ({_short(task)}) failed: {what}"))


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _short(task, limit: int = 120) -> str:
    try:
        text = repr(task)
    except Exception:  # a task whose repr raises still gets named
        text = f"<{type(task).__name__}>"
    return _one_line(text, limit)


def map_tasks(fn, tasks, *, jobs: int = 1, scheduler: str | None = None, progress=None):
    """Yield ``(index, fn(tasks[index]))`` for every task as it completes (any order).

    ``jobs``: local worker processes (<= 1: this process, tasks in order). ``scheduler``: a Dask
    scheduler address; it takes precedence over ``jobs``. ``progress``: None, or a callable
    ``progress(done, total)`` called after each task's result is in (before it is yielded).
    Raises `TaskError` when a task raises, `DistributeError` when the tasks cannot be run; either
    way (and on KeyboardInterrupt, or when the consumer stops iterating) outstanding tasks are
    cancelled before the exception propagates.
    """
    tasks = list(tasks)
    if not tasks:
        return
    if scheduler:
        yield from _dask(fn, tasks, scheduler, progress)
    elif jobs > 1 and len(tasks) > 1:
        yield from _pool(fn, tasks, min(jobs, len(tasks)), progress)
    else:
        for i, task in enumerate(tasks):
            try:
                result = fn(task)
            except Exception as e:
                raise TaskError(i, task, e) from e
            if progress is not None:
                progress(i + 1, len(tasks))
            yield i, result


# -- local processes -------------------------------------------------------------------------------

def _context(fn):
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    module = getattr(fn, "__module__", None)
    if module and module != "__main__":  # no effect once this process's fork server runs
        ctx.set_forkserver_preload(["__main__", module])
    return ctx


def _ignore_sigint() -> None:
    """In each pool worker: Ctrl-C is the parent's to handle (it stops the pool)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop(executor) -> None:
    """Cancel what has not started and end the workers now (running tasks included)."""
    procs = list((getattr(executor, "_processes", None) or {}).values())  # shutdown forgets them
    executor.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(5)


def _pool(fn, tasks: list, jobs: int, progress) -> Iterator[tuple[int, object]]:
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    limit = max(MIN_IN_FLIGHT, IN_FLIGHT_PER_WORKER * jobs)
    executor = ProcessPoolExecutor(max_workers=jobs, mp_context=_context(fn), initializer=_ignore_sigint)
    running: dict = {}
    done_count, nxt = 0, 0
    clean = False
    try:
        while nxt < len(tasks) or running:
            while nxt < len(tasks) and len(running) < limit:
                running[executor.submit(fn, tasks[nxt])] = nxt
                nxt += 1
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in sorted(finished, key=running.get):
                i = running.pop(fut)
                error = fut.exception()
                if isinstance(error, BrokenProcessPool):
                    raise TaskError(i, tasks[i], "a worker process died while running it (or another task "
                                    f"in flight): {error}") from error
                if error is not None:
                    raise TaskError(i, tasks[i], error, _remote_traceback(error)) from error
                done_count += 1
                if progress is not None:
                    progress(done_count, len(tasks))
                yield i, fut.result()
        clean = True
    finally:
        if clean:
            executor.shutdown(wait=True)
        else:  # a task failed, Ctrl-C, or the consumer stopped: nothing left running behind
            _stop(executor)


def _remote_traceback(error: BaseException) -> str:
    cause = error.__cause__
    return str(getattr(cause, "tb", "")) if cause is not None else ""


# -- Dask --------------------------------------------------------------------------------------------

def _connect(scheduler: str):
    try:
        import distributed
    except ImportError:
        raise DistributeError("--scheduler needs Dask: pip install 'dask[distributed]' (or the extra "
                              "xent-conformance[dask])") from None
    try:
        return distributed, distributed.Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as e:
        raise DistributeError(_one_line(f"cannot reach the Dask scheduler at {scheduler!r} "
                                        f"(timeout {CONNECT_TIMEOUT_S:g} s): {e}")) from None


def _dask(fn, tasks: list, scheduler: str, progress) -> Iterator[tuple[int, object]]:
    import uuid

    distributed, client = _connect(scheduler)
    running: dict = {}
    try:
        threads = sum(client.nthreads().values()) or 1
        limit = max(MIN_IN_FLIGHT, IN_FLIGHT_PER_WORKER * threads)
        token = uuid.uuid4().hex[:12]
        pending = distributed.as_completed(loop=client.loop)
        nxt, done_count = 0, 0

        def submit():
            nonlocal nxt
            fut = client.submit(fn, tasks[nxt], key=f"xent-{token}-{nxt}", pure=False)
            running[fut.key] = (fut, nxt)
            pending.add(fut)
            nxt += 1

        while nxt < len(tasks) and len(running) < limit:
            submit()
        for fut in pending:
            _, i = running.pop(fut.key)
            if fut.status != "finished":
                error = fut.exception() if fut.status == "error" else f"the task was {fut.status}"
                tb = ""
                if fut.status == "error":
                    import traceback as tbmod

                    tb = "".join(tbmod.format_tb(fut.traceback()))
                raise TaskError(i, tasks[i], error, tb)
            result = fut.result()
            fut.release()
            done_count += 1
            if progress is not None:
                progress(done_count, len(tasks))
            while nxt < len(tasks) and len(running) < limit:
                submit()
            yield i, result
    finally:
        if running:  # a task failed, Ctrl-C, or the consumer stopped: cancel the rest on the cluster
            try:
                client.cancel([f for f, _ in running.values()], force=True)
            except Exception:
                pass
        client.close()


def worker_count(scheduler: str | None, jobs: int = 1) -> int:
    """How many tasks can run at once: the Dask cluster's threads, or ``jobs`` (at least 1)."""
    if not scheduler:
        return max(1, jobs)
    _, client = _connect(scheduler)
    try:
        return max(1, sum(client.nthreads().values()))
    finally:
        client.close()


__all__ = ["DistributeError", "TaskError", "map_tasks", "worker_count"]
