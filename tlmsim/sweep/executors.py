"""Executors: each is a context manager yielding ``run(todo) -> rows as they finish``.

On the way out after an error or an interrupt an executor stops its workers for good:
none survives the sweep, whatever stopped it.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterable, Iterator

from tlmsim.engine.errors import UserError
from tlmsim.sweep.spec import run_point

EXECUTORS = ("local", "dask", "serial")
# How long to try a --scheduler address before saying it cannot be reached.
DASK_CONNECT_TIMEOUT_S = 5
# How long a stopped worker gets to exit after SIGTERM before it is killed.
WORKER_STOP_TIMEOUT_S = 5


@contextlib.contextmanager
def _started_ignoring_sigint():
    """Processes started in here ignore SIGINT for good: a terminal's ctrl-C reaches the whole
    process group, but only the parent acts on it (it then stops the workers), so workers
    print no tracebacks. An ignored signal stays ignored across exec and Python keeps it so,
    which covers the worker's start-up too (a pool initializer would come after its imports)
    and Dask's nannies (which have no initializer hook). The parent ignores SIGINT too for
    this moment (a process start, or a local cluster's start-up)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old if old is not None else signal.default_int_handler)


@contextlib.contextmanager
def local_executor(raw: dict, jobs: int) -> Iterator[Callable[[Iterable[dict]], Iterator[dict]]]:
    """Run points on ``jobs`` local processes."""
    import multiprocessing
    from concurrent import futures
    from concurrent.futures.process import BrokenProcessPool

    # spawn, not fork: the parent may hold threads (torch, tqdm) that fork would copy mid-state.
    pool = futures.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))

    def submit(point: dict):
        with _started_ignoring_sigint():  # a submit may start a worker
            return pool.submit(run_point, raw, point)
    try:
        yield lambda todo: _as_finished(submit, futures.wait, todo, 2 * jobs)
    except BrokenProcessPool:
        _stop_pool(pool)
        raise UserError("a sweep worker process died (out of memory?); finished points are kept; rerun the "
                        "same command to resume") from None
    except BaseException:
        _stop_pool(pool)
        raise
    pool.shutdown()


def _stop_pool(pool) -> None:
    """Stop every worker of a ProcessPoolExecutor now: SIGTERM, then SIGKILL if it lingers."""
    with _signals_deferred():
        workers = list((pool._processes or {}).values())  # no public way before Python 3.14
        for worker in workers:
            worker.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            worker.join(WORKER_STOP_TIMEOUT_S)
            if worker.is_alive():
                worker.kill()
                worker.join(1)


@contextlib.contextmanager
def dask_executor(raw: dict, jobs: int, address: str | None = None
                  ) -> Iterator[Callable[[Iterable[dict]], Iterator[dict]]]:
    """Run points on a Dask cluster (``address``) or on a local one of ``jobs`` workers."""
    from distributed import Client, LocalCluster, wait

    before = _child_pids()
    client = cluster = None
    try:
        if address:
            client = _connect(Client, address)
            window = 2 * max(jobs, sum(client.nthreads().values()))
        else:
            # silence_logs: workers whose task is cancelled by an interrupt log warnings; not news.
            with _started_ignoring_sigint():
                cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None,
                                       silence_logs=logging.ERROR)
            client = Client(cluster)
            window = 2 * jobs
        # pure=False: identical inputs must still run (a retried point is a new run).
        yield lambda todo: _as_finished(lambda p: client.submit(run_point, raw, p, pure=False), wait, todo, window)
    finally:
        with _signals_deferred():
            if client is not None:
                client.close(timeout=WORKER_STOP_TIMEOUT_S)
            if cluster is not None:
                cluster.close(timeout=WORKER_STOP_TIMEOUT_S)
                _kill_children_since(before)  # a nanny or worker that outlived close()


def _connect(client_class, address: str):
    """A Client of the scheduler at ``address``, or one line if it does not answer in a few seconds."""
    try:
        return client_class(address, timeout=DASK_CONNECT_TIMEOUT_S)
    except (OSError, ValueError, TimeoutError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"cannot reach the Dask scheduler at {address} ({reason}); start it or drop "
                        f"--scheduler") from None


def _child_pids() -> set[int]:
    """Pids of this process's descendants."""
    import psutil

    return {p.pid for p in psutil.Process().children(recursive=True)}


def _kill_children_since(before: set[int]) -> None:
    """Kill descendants started after ``before`` was taken (multiprocessing's resource tracker excepted)."""
    import psutil

    for proc in psutil.Process().children(recursive=True):
        if proc.pid in before:
            continue
        with contextlib.suppress(psutil.Error):
            if "resource_tracker" not in " ".join(proc.cmdline()):
                proc.kill()


@contextlib.contextmanager
def serial_executor(raw: dict, jobs: int = 1) -> Iterator[Callable[[Iterable[dict]], Iterator[dict]]]:
    """Run points one after the other in this process (debugging, tiny sweeps)."""
    import tlmsim.sweep as package

    # run_point is looked up on the package at call time, so a replacement there (a test's
    # stand-in) runs; processes of the other executors always import the real one.
    yield lambda todo: (package.run_point(raw, p) for p in todo)


def _as_finished(submit, wait, todo: Iterable[dict], window: int) -> Iterator[dict]:
    """Rows as their points finish, with at most ``window`` points submitted at a time (a long
    sweep holds a few futures, not one per point); unfinished ones are cancelled on exit."""
    pending: set = set()
    try:
        for point in todo:
            pending.add(submit(point))
            if len(pending) >= window:
                done, pending = wait(pending, return_when="FIRST_COMPLETED")
                yield from (f.result() for f in done)
        while pending:
            done, pending = wait(pending, return_when="FIRST_COMPLETED")
            yield from (f.result() for f in done)
    finally:
        for future in pending:
            future.cancel()


@contextlib.contextmanager
def _signals_deferred():
    """Hold off SIGINT and SIGTERM while workers are being stopped: a second ctrl-C must not
    interrupt the clean-up and orphan them (the first interrupt is already on its way up)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = [signal.SIGINT, signal.SIGTERM]
    old = {s: signal.signal(s, lambda *_: None) for s in caught}
    try:
        yield
    finally:
        for s, handler in old.items():
            if handler is not None:  # (None: a handler not installed from Python, nothing to restore)
                signal.signal(s, handler)


EXECUTOR_CONTEXTS = {"local": local_executor, "dask": dask_executor, "serial": serial_executor}
