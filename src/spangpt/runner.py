"""Many runs side by side (reproduce --jobs N): a picklable function over a list of items, N at a time, in
spawned worker processes, stopping cleanly. It knows nothing of what a run does; each item's str() names
it in messages ("vanilla seed 0").

run_all hands the items to a pool of N workers, in the caller's order of priority (long runs first, so the
short ones fill the end). Each worker (_worker_init) takes its share of the threads, a process group of its
own and a thread that watches its parent. Endings:
- a run fails: run_all raises its error at once; runs not started are cancelled, running ones finish;
- Ctrl-C or `kill PID` of the parent: _forward_stops cancels the runs not started and passes the signal
  on; each worker finishes its step, saves and stops, and _run_queued refuses any run handed over later;
- the parent is killed outright: _watch_parent sends its worker one SIGTERM, so it saves and exits.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import FIRST_EXCEPTION, CancelledError, ProcessPoolExecutor, wait

import torch

from spangpt.errors import RERUN, Stopped

_stopped = False  # in a pool worker: set once one of its runs was stopped


def run_all(fn, items: list, jobs: int, key=None) -> list:
    """[fn(item) for item in items], `jobs` at a time; results in the order of items. fn and the items are
    sent to the workers, so both must pickle (fn a module-level function). key: a sort key for the order
    the runs start in (as sorted(): smallest first, ties in the order of items). Each worker gets an equal
    share of this process's threads. One job, or one item, runs here, in order, without a pool."""
    if jobs == 1 or len(items) == 1:
        return [fn(item) for item in items]
    threads = max(1, torch.get_num_threads() // jobs)
    # spawn, not fork: a forked child inherits the parent's OpenMP thread pool state and can hang in it
    with ProcessPoolExecutor(min(jobs, len(items)), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init, initargs=(threads,)) as pool:
        order = sorted(range(len(items)), key=(lambda i: key(items[i])) if key else None)
        futures = [None] * len(items)
        for i in order:
            futures[i] = pool.submit(_run_queued, fn, items[i])
        with _forward_stops(futures):
            try:
                return _results(futures)
            except BaseException:  # an error, or a stop: start no more runs; the running ones finish or save and stop
                pool.shutdown(cancel_futures=True)
                # a stop cancels the runs not started, so a cancelled one may come first: report the stop
                ended = [f.exception() for f in futures if f.done() and not f.cancelled()]
                stops = [e for e in ended if isinstance(e, Stopped)]
                if stops:
                    raise stops[0] from None
                raise


def _results(futures) -> list:
    """The results in input order, but the first failure ends the wait at once (waiting in input order
    would first sit out runs queued behind it, and start more)."""
    wait(futures, return_when=FIRST_EXCEPTION)
    failed = [f for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
    if failed:
        raise failed[0].exception()
    return [f.result() for f in futures]


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)
    # Stop requests reach a worker from the parent only (_forward_stops): in a process group of its own, a
    # terminal's Ctrl-C (sent to the whole foreground group) does not arrive twice, which would read as
    # "stop at once" instead of "save and stop".
    if hasattr(os, "setpgrp"):
        os.setpgrp()
    # And if the parent dies, even by SIGKILL: one SIGTERM, so the worker saves and stops instead of training
    # on as an orphan that still holds its run's lock. (Not PR_SET_PDEATHSIG: Linux sends that once per
    # exiting thread of the parent, and a second signal means "stop at once, unsaved".)
    threading.Thread(target=_watch_parent, daemon=True).start()


def _watch_parent() -> None:
    multiprocessing.parent_process().join()  # returns once the parent has ended
    os.kill(os.getpid(), signal.SIGTERM)


def _run_queued(fn, item):
    """fn(item) in a pool worker, unless this worker was stopped before: a stop ends the whole table, but
    the pool may already have handed the worker its next run, which the parent can no longer cancel."""
    global _stopped
    if _stopped:
        raise CancelledError(f"{item}: not started, the table was stopped")
    try:
        return fn(item)
    except (Stopped, KeyboardInterrupt) as e:
        _stopped = True
        if not multiprocessing.parent_process().is_alive():  # orphaned (the parent was killed): nobody waits for a result, and the
            # pool's queues never close while the other workers hold them, so leave now; the state is saved
            if isinstance(e, Stopped):
                e.hint = RERUN  # a table always resumes its runs
            with contextlib.suppress(OSError):
                print(f"spangpt: {item}: {str(e) or 'interrupted'} (the parent process had died)",
                      file=sys.stderr, flush=True)
            os._exit(1)
        raise


@contextlib.contextmanager
def _forward_stops(futures):
    """While the parent waits: SIGINT or SIGTERM (Ctrl-C, `kill PID`) cancels the runs not started yet and
    passes the signal on to the workers, which finish their step, save and stop; a second one stops them at
    once. Off the main thread (where Python cannot set handlers) nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got = []

    def forward(signum, frame):
        got.append(signum)
        for f in futures:
            f.cancel()  # only those not running yet
        for child in multiprocessing.active_children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)
        if len(got) > 1:
            raise KeyboardInterrupt

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
