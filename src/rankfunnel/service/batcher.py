"""Async micro-batching across requests: one model worker per reranker (device), token-budget batches.

Concurrent requests put their (query, document) pairs on a bounded queue. One worker task takes whole
requests off the queue until the batch's token budget (or pair cap) is reached or ``max_wait_ms`` passed,
then runs the blocking ``reranker.predict`` in its own single thread, so the event loop stays free and the
model never runs two calls at once. A full queue raises :class:`~rankfunnel.errors.OverloadedError` with a
``retry_after`` estimated from the measured throughput (the service answers 429 + Retry-After); with
``max_queue_wait_ms="auto"`` the drain-time bound is derived from the measured model-call time.

Priorities: the queue is served most urgent first. While more urgent requests have been seen recently
(``URGENT_WINDOW_S``), less urgent work runs in slices of at most ``preempt_ms`` of model time (a request
larger than a slice is split over several calls), so an urgent request waits at most one slice for the model
instead of a whole large batch, and an urgent call carries no less urgent work along (its own call costs only
its own pairs); admission counts only the work queued *ahead* of a request (its own class and more urgent ones),
so a queue full of less urgent work never refuses an urgent request, and a request drains at the model time
that more urgent arrivals (their rate over the last ``URGENT_WINDOW_S``) leave over, so it is refused up front
rather than accepted and overtaken until its deadline. Ageing bounds starvation: a request that
has waited ``promote_after_ms`` (or half its own timeout, if less) is served as most urgent, so a steady stream
of urgent work cannot hold an accepted request in the queue until its deadline passes.

Isolation: when a model call over several requests fails, the batch is split in halves and each half is
retried (recursively), so only the request(s) whose own pairs make the model fail get the error; the
innocent requests batched with them are answered normally.

No FastAPI import: the CLI and the benchmarks use this module too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

import numpy as np

from rankfunnel.errors import OverloadedError, RerankerUnavailableError
from rankfunnel.protocols import Reranker
from rankfunnel.rerank.stage2 import accepts_timeout

log = logging.getLogger(__name__)

#: Characters per token used to estimate a pair's length without running a tokenizer.
CHARS_PER_TOKEN = 4
#: Tokens added per pair for special tokens and templates.
PAIR_OVERHEAD_TOKENS = 8
#: ``max_queue_wait_ms="auto"``: the queue may hold this many model calls' worth of work ...
AUTO_QUEUE_WAIT_CALLS = 4.0
#: ... but at least this long (so that a fast model is not throttled by timer noise) ...
AUTO_QUEUE_WAIT_MIN_S = 1.0
#: ... and at most this fraction of the request deadline (a queued request must still have time to be scored).
AUTO_QUEUE_WAIT_DEADLINE_FRACTION = 0.25
#: Less urgent work is sliced (``preempt_ms``) while a more urgent request arrived within this many seconds;
#: the arrival rate of more urgent work is measured over the same window.
URGENT_WINDOW_S = 10.0
#: Admission: a request drains at the model time more urgent arrivals leave over, but at least this fraction.
URGENT_FLOOR = 0.1


#: Failures that say nothing about the input (a dead or busy model): no point in splitting the batch.
_NOT_INPUT_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, ConnectionError, OverloadedError)


def estimate_tokens(pairs: Sequence[tuple[str, str]]) -> int:
    """A cheap estimate of the tokens of ``pairs`` (characters / 4 + a fixed overhead per pair)."""
    return sum((len(q) + len(d)) // CHARS_PER_TOKEN + PAIR_OVERHEAD_TOKENS for q, d in pairs)


@dataclass(slots=True, eq=False)
class _Item:
    pairs: Sequence[tuple[str, str]]
    tokens: int
    future: asyncio.Future[np.ndarray]
    enqueued: float = field(default_factory=time.perf_counter)
    taken: bool = False  # every pair handed to the model (or dropped at its deadline)
    deadline: float | None = None  # time.monotonic() after which the request no longer waits
    priority: int = 1  # 0 = most urgent; served first (FIFO within a priority); 0 once promoted (ageing)
    cls: int = 1  # the priority it was sent with: a promoted request is still sliced like its class
    offset: int = 0  # pairs handed to the model so far (a sliced request goes in several calls)
    scored: int = 0  # pairs whose scores are in ``scores``
    scores: np.ndarray | None = None
    promote_at: float | None = None  # time.monotonic() after which it is served as most urgent (ageing)

    @property
    def left(self) -> int:
        """Pairs not yet handed to the model."""
        return len(self.pairs) - self.offset


@dataclass(slots=True, eq=False)
class _Slice:
    """``item.pairs[start:end]``: the part of one request that goes into one model call."""

    item: _Item
    start: int
    end: int

    @property
    def pairs(self) -> Sequence[tuple[str, str]]:
        return self.item.pairs[self.start : self.end]

    def done(self) -> bool:
        return self.item.future.done()

    def deliver(self, part: np.ndarray) -> None:
        item = self.item
        if item.future.done():
            return
        if item.scores is None:
            item.scores = np.empty(len(item.pairs), dtype=np.float32)
        item.scores[self.start : self.end] = part
        item.scored += self.end - self.start
        if item.scored >= len(item.pairs):
            item.future.set_result(item.scores)

    def fail(self, exc: BaseException) -> None:
        if not self.item.future.done():
            self.item.future.set_exception(exc)


BatchObserver = Callable[[int, int, float], None]
"""Called after each model call with (pairs, requests, seconds)."""


class MicroBatcher:
    """Gathers pairs from concurrent requests into token-budget batches for one model worker.

    Args:
        reranker: Anything with ``predict(pairs) -> raw scores`` (e.g. a ``BaseReranker``).
        max_batch_tokens: Estimated tokens per model call; a single larger request runs alone.
        max_batch_pairs: Pairs per model call at most (a single larger request runs alone).
        max_wait_ms: How long to wait for more requests once one is queued and the model is idle.
        max_queue_pairs: Pairs allowed to wait; more raises :class:`OverloadedError`.
        max_queue_wait_ms: Also raise it when the queue would take longer than this to drain at the measured
            throughput (None: no such check). ``"auto"`` derives the bound from the measured time of a model
            call: ``AUTO_QUEUE_WAIT_CALLS`` calls, at least ``AUTO_QUEUE_WAIT_MIN_S`` and at most
            ``AUTO_QUEUE_WAIT_DEADLINE_FRACTION`` of ``deadline_ms`` (see :meth:`queue_wait_bound_s`).
        on_batch: Optional observer called after each model call (for metrics).
        deadline_ms: The request deadline the ``"auto"`` bound must leave room within.
        queue_shares: Per priority (index 0 = most urgent), the fraction of ``max_queue_pairs`` (and of the
            drain-time bound) that requests of that priority may find queued; beyond it they are refused
            (429), so the least urgent are refused first. None: all 1.0.
        preempt_ms: While a more urgent request arrived in the last ``URGENT_WINDOW_S`` seconds, less urgent
            work goes to the model in slices of about this much model time (from the measured pairs/s), so
            the urgent request waits at most one slice. None: never slice.
        promote_after_ms: Ageing: a queued request that has waited this long (or half its own ``timeout_s``,
            whichever is less) is served as most urgent (priority 0, behind the urgent requests already
            waiting), so strict priority cannot starve an accepted request until its deadline. None: never.

    Priorities: :meth:`predict` takes ``priority`` (0 = most urgent, default 1); the queue is served most
    urgent first, first-in first-out within a priority, so under load the least urgent requests wait
    longest and (with ``queue_shares``) are refused first. The drain-time bound counts only the work queued
    ahead of a request (its priority and more urgent ones) plus the call in progress, drained at the model
    time left over by the more urgent pairs arriving (their rate over the last ``URGENT_WINDOW_S``).

    Examples:
        >>> import asyncio
        >>> from rankfunnel.rerank.fake import FakeReranker
        >>> async def main():
        ...     async with MicroBatcher(FakeReranker()) as b:
        ...         return await asyncio.gather(b.predict([("red", "red car")]), b.predict([("car", "boat")]))
        >>> [a.tolist() for a in asyncio.run(main())]
        [[10.0], [0.0]]
    """

    def __init__(
        self,
        reranker: Reranker,
        *,
        max_batch_tokens: int = 16_384,
        max_batch_pairs: int = 512,
        max_wait_ms: float = 3.0,
        max_queue_pairs: int = 8_192,
        max_queue_wait_ms: float | Literal["auto"] | None = None,
        on_batch: BatchObserver | None = None,
        deadline_ms: float = 10_000.0,
        queue_shares: Sequence[float] | None = None,
        preempt_ms: float | None = 50.0,
        promote_after_ms: float | None = 5_000.0,
    ) -> None:
        self.reranker = reranker
        self.name = str(getattr(reranker, "name", type(reranker).__name__))
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_pairs = max_batch_pairs
        self.max_wait_s = max_wait_ms / 1e3
        self.max_queue_pairs = max_queue_pairs
        self.auto_queue_wait = max_queue_wait_ms == "auto"
        self.max_queue_wait_s = (
            None if max_queue_wait_ms is None or max_queue_wait_ms == "auto" else float(max_queue_wait_ms) / 1e3
        )
        self.deadline_s = deadline_ms / 1e3
        self.on_batch = on_batch
        # a heap of (priority, arrival number, item): most urgent first, FIFO within a priority
        self._queue: list[tuple[int, int, _Item]] = []
        self._arrivals = itertools.count()
        self.queue_shares = tuple(float(x) for x in queue_shares) if queue_shares is not None else ()
        if any(not (math.isfinite(x) and 0 < x <= 1) for x in self.queue_shares):
            raise ValueError(f"queue_shares must be fractions in (0, 1], got {queue_shares!r}")
        if preempt_ms is not None and not (math.isfinite(preempt_ms) and preempt_ms > 0):
            raise ValueError(f"preempt_ms must be a positive number of milliseconds or None, got {preempt_ms!r}")
        self.preempt_s = None if preempt_ms is None else float(preempt_ms) / 1e3
        if promote_after_ms is not None and not (math.isfinite(promote_after_ms) and promote_after_ms > 0):
            raise ValueError(
                f"promote_after_ms must be a positive number of milliseconds or None, got {promote_after_ms!r}"
            )
        self.promote_after_s = None if promote_after_ms is None else float(promote_after_ms) / 1e3
        self.promoted = 0  # requests served as most urgent after waiting too long (ageing), since start
        self._next_promote = math.inf  # no queued request is due for promotion before this (time.monotonic())
        self._pending_by_priority: dict[int, int] = {}  # pairs waiting, per priority
        self._last_seen: dict[int, float] = {}  # priority -> time.monotonic() of its latest request
        self._recent: collections.deque[tuple[float, int, int]] = collections.deque()  # (time, priority, pairs)
        self._recent_pairs: dict[int, int] = {}  # pairs per priority in ``_recent``
        self._busy_pairs = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closed = True
        self._pairs_per_s = 0.0  # exponentially weighted throughput, for Retry-After
        self._call_s = 0.0  # exponentially weighted duration of one model call, for the "auto" queue bound
        self._slice_f = 0.0  # pairs per slice, calibrated on measured full slices (0: not yet)
        self._full_slice = 0  # the call being taken is one full slice of this many pairs (0: it is not)
        self._takes_timeout = accepts_timeout(reranker)
        self._predict_fn: Callable[..., np.ndarray] = reranker.predict

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the worker task (and its model thread) on the running event loop."""
        if self._task is not None:
            return
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rankfunnel-{self.name}")
        self._closed = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        """Stop accepting work, fail what is still queued, and stop the worker."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._queue:
            _, _, item = heapq.heappop(self._queue)
            if not item.future.done():
                item.future.set_exception(
                    OverloadedError("The service is shutting down; retry shortly.", 1.0)
                )
        self._pending_by_priority.clear()
        self._next_promote = math.inf
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def __aenter__(self) -> MicroBatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- state ----------------------------------------------------------------------------------------------
    @property
    def queue_pairs(self) -> int:
        """Pairs waiting for the model (not counting the batch being scored)."""
        return self._pending_pairs

    @property
    def busy_pairs(self) -> int:
        """Pairs in the model call now running."""
        return self._busy_pairs

    def queue_wait_bound_s(self) -> float | None:
        """The drain-time bound in seconds now in force (None: none; "auto" before any measured call: none)."""
        if not self.auto_queue_wait:
            return self.max_queue_wait_s
        if self._call_s <= 0:
            return None
        cap = AUTO_QUEUE_WAIT_DEADLINE_FRACTION * self.deadline_s
        return min(cap, max(AUTO_QUEUE_WAIT_MIN_S, AUTO_QUEUE_WAIT_CALLS * self._call_s))

    def pairs_ahead(self, priority: int) -> int:
        """Pairs queued that a new request of ``priority`` would wait for (its priority and more urgent)."""
        return sum(n for p, n in self._pending_by_priority.items() if p <= priority)

    def _note_arrival(self, now: float, priority: int, n: int) -> None:
        """Count ``n`` pairs of ``priority`` admitted now (for :meth:`urgent_pairs_per_s`)."""
        self._recent.append((now, priority, n))
        self._recent_pairs[priority] = self._recent_pairs.get(priority, 0) + n
        self._forget_arrivals(now)

    def _forget_arrivals(self, now: float) -> None:
        while self._recent and now - self._recent[0][0] > URGENT_WINDOW_S:
            _, p, m = self._recent.popleft()
            self._recent_pairs[p] -= m

    def urgent_pairs_per_s(self, priority: int, now: float | None = None) -> float:
        """Pairs/s admitted over the last ``URGENT_WINDOW_S`` of requests more urgent than ``priority``."""
        self._forget_arrivals(time.monotonic() if now is None else now)
        return sum(m for p, m in self._recent_pairs.items() if p < priority) / URGENT_WINDOW_S

    def slice_pairs(self, priority: int, now: float | None = None) -> int | None:
        """Pairs per model call for work of ``priority`` now (None: no slicing).

        Work is sliced when a more urgent request arrived within ``URGENT_WINDOW_S`` and the throughput has
        been measured: one slice is ``preempt_ms`` of model time at the measured pairs/s (at least 1 pair) at
        first; then the size follows the measured time of full slices (a small call costs more per pair than
        the average call: a fixed overhead per call), so that a slice really takes about ``preempt_ms``.
        """
        if self.preempt_s is None or self._pairs_per_s <= 0:
            return None
        now = time.monotonic() if now is None else now
        if not any(p < priority and now - t <= URGENT_WINDOW_S for p, t in self._last_seen.items()):
            return None
        if self._slice_f > 0:  # calibrated on the measured time of full slices (feedback, see _call)
            return max(1, round(self._slice_f))
        return max(1, int(self._pairs_per_s * self.preempt_s))

    @property
    def _pending_pairs(self) -> int:
        """Pairs waiting, all priorities."""
        return sum(self._pending_by_priority.values())

    def _add_pending(self, priority: int, n: int) -> None:
        self._pending_by_priority[priority] = self._pending_by_priority.get(priority, 0) + n

    def retry_after(self) -> float:
        """Seconds until the queue has likely drained (at least 1)."""
        if self._pairs_per_s <= 0:
            return 1.0
        return float(max(1, math.ceil((self._pending_pairs + self._busy_pairs) / self._pairs_per_s)))

    # -- scoring --------------------------------------------------------------------------------------------
    def _share(self, priority: int) -> float:
        if not self.queue_shares:
            return 1.0
        return self.queue_shares[min(max(priority, 0), len(self.queue_shares) - 1)]

    async def predict(
        self, pairs: Sequence[tuple[str, str]], *, timeout_s: float | None = None, priority: int = 1
    ) -> np.ndarray:
        """Raw scores for ``pairs``, scored together with other requests' pairs.

        ``timeout_s`` is the time this request has left: a reranker whose ``predict`` takes ``timeout=``
        (the remote one) gets the latest deadline of the requests in its batch, so it never retries or
        sleeps (``Retry-After``) for requests that have all given up.

        Raises:
            OverloadedError: the queue is full (or the batcher is stopped).
            RerankerUnavailableError: the model returned unusable output.
            Exception: whatever the model raised while scoring this request's batch.
        """
        n = len(pairs)
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        if self._closed or self._wakeup is None:
            raise OverloadedError(
                "The reranker worker is not running (starting or shutting down); retry shortly.", 1.0
            )
        now = time.monotonic()
        self._last_seen[int(priority)] = now
        share = self._share(priority)
        if share < 1.0 and self._pending_pairs > 0 and self._pending_pairs + n > share * self.max_queue_pairs:
            wait = self.retry_after()
            raise OverloadedError(
                f"The rerank queue is {self._pending_pairs} pairs long; requests of priority {priority} may "
                f"only queue up to {share:.0%} of max_queue_pairs={self.max_queue_pairs} (more urgent ones are "
                f"served first); retry after {wait:.0f} s or send a more urgent request.",
                wait,
            )
        if self._pending_pairs > 0 and self._pending_pairs + n > self.max_queue_pairs:
            wait = self.retry_after()
            raise OverloadedError(
                f"The rerank queue is full ({self._pending_pairs} pairs waiting, limit max_queue_pairs="
                f"{self.max_queue_pairs}); retry after {wait:.0f} s or send fewer documents.",
                wait,
            )
        bound_s = self.queue_wait_bound_s()
        if bound_s is not None:
            bound_s *= share  # a less urgent class may find only its share of the drain time queued
        ahead = self.pairs_ahead(priority)
        if bound_s is not None and self._pairs_per_s > 0 and ahead > 0:
            # more urgent requests arriving meanwhile overtake this one: it drains at what they leave over
            left_over = max(URGENT_FLOOR, 1.0 - self.urgent_pairs_per_s(priority, now) / self._pairs_per_s)
            drain_s = (ahead + self._busy_pairs + n) / (self._pairs_per_s * left_over)
            if drain_s > bound_s:
                wait = self.retry_after()
                how = " derived from the measured model time" if self.auto_queue_wait else ""
                cls = f" for priority {priority} ({share:.0%} of the bound)" if share < 1.0 else ""
                raise OverloadedError(
                    f"The rerank queue would take {drain_s:.1f} s to drain (limit max_queue_wait_ms="
                    f"{bound_s * 1e3:.0f}{how}{cls}); retry after {wait:.0f} s.",
                    wait,
                )
        fut: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        age_s = self.promote_after_s
        if age_s is not None and timeout_s is not None:
            age_s = min(age_s, 0.5 * timeout_s)
        item = _Item(
            pairs=pairs,
            tokens=estimate_tokens(pairs),
            future=fut,
            deadline=None if timeout_s is None else now + timeout_s,
            priority=int(priority),
            cls=int(priority),
            promote_at=None if age_s is None or priority <= 0 else now + age_s,
        )
        self._note_arrival(now, item.priority, n)
        if item.promote_at is not None:
            self._next_promote = min(self._next_promote, item.promote_at)
        heapq.heappush(self._queue, (item.priority, next(self._arrivals), item))
        self._add_pending(item.priority, n)
        self._wakeup.set()
        try:
            return await fut
        except asyncio.CancelledError:  # deadline hit: drop what the model has not taken yet
            if not item.taken:
                item.taken = True
                self._add_pending(item.priority, -item.left)
            raise

    def _promote(self, now: float) -> None:
        """Ageing: queue requests that have waited past their ``promote_at`` again as most urgent.

        A promoted request queues behind the urgent requests already waiting (not ahead of them) and still goes
        to the model in slices while urgent requests arrive, so it delays them by one slice at most. The old heap
        entry stays behind, stale (its priority no longer matches the item's); readers skip it.
        """
        waiting = [(at, e) for e in self._queue if (at := e[2].promote_at) is not None and e[0] > 0]
        aged = sorted((e for at, e in waiting if at <= now), key=lambda e: e[1])  # in arrival order
        self._next_promote = min((at for at, _ in waiting if at > now), default=math.inf)
        for prio, _, item in aged:
            item.promote_at = None
            if prio != item.priority or item.taken or item.future.done():
                continue
            self._add_pending(prio, -item.left)
            item.priority = 0
            self._add_pending(0, item.left)
            heapq.heappush(self._queue, (0, next(self._arrivals), item))  # behind the urgent ones waiting
            self.promoted += 1
            log.debug("reranker %r: a priority-%d request waited too long; served as most urgent", self.name, prio)

    def _take_batch(self) -> list[_Slice]:
        """The next model call: most urgent first, up to the token/pair budget; less urgent work in slices.

        Whole requests only, except work that :meth:`slice_pairs` says to slice: all such work in one call
        comes to one slice at most (a request larger than that continues in the next call), and a call that
        holds more urgent work takes none of it (the urgent requests do not pay for filler).
        """
        batch: list[_Slice] = []
        tokens = pairs = sliced = 0
        full = False
        now = time.monotonic()
        if now >= self._next_promote:  # a scan of the queue only when a request is due (not every call)
            self._promote(now)
        while self._queue:
            prio, _, item = self._queue[0]
            if prio != item.priority:  # stale: the item was promoted (ageing) and queued again
                heapq.heappop(self._queue)
                continue
            if item.taken or item.future.done():  # cancelled while waiting, or a slice of it failed
                heapq.heappop(self._queue)
                if not item.taken:
                    item.taken = True
                    self._add_pending(item.priority, -item.left)
                continue
            cap = self.slice_pairs(item.cls, now)  # a promoted request jumps the queue, in slices
            if batch and (cap is not None or sliced) and item.cls != batch[0].item.cls:
                break  # sliced work shares a call with no other class: an urgent call takes no filler
            per_pair = item.tokens / max(len(item.pairs), 1)
            take = item.left if cap is None else min(item.left, cap - sliced, self.max_batch_pairs)
            if batch:
                fits = min(self.max_batch_pairs - pairs, int((self.max_batch_tokens - tokens) // per_pair))
                if cap is None and item.left > fits:
                    break
                take = min(take, fits)
            if take <= 0:
                break
            start = item.offset
            item.offset += take
            if item.offset >= len(item.pairs):
                heapq.heappop(self._queue)
                item.taken = True
            self._add_pending(item.priority, -take)
            batch.append(_Slice(item, start, start + take))
            tokens += int(per_pair * take)
            pairs += take
            if cap is not None:
                sliced += take
                if sliced >= cap:
                    full = sliced == pairs  # only sliced work in this call, a whole slice of it
                    break
        # a call of exactly one slice of less urgent work calibrates the slice size (see _call)
        self._full_slice = pairs if full else 0
        return batch

    def _budget_full(self) -> bool:
        tokens = pairs = 0
        for prio, _, item in self._queue:
            if prio != item.priority or item.taken or item.future.done():
                continue
            tokens += item.tokens
            pairs += item.left
            if tokens >= self.max_batch_tokens or pairs >= self.max_batch_pairs:
                return True
        return False

    async def _run(self) -> None:
        assert self._wakeup is not None and self._executor is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            fill_until = loop.time() + self.max_wait_s
            while not self._budget_full():
                left = fill_until - loop.time()
                if left <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), left)
                except TimeoutError:
                    break
            batch = self._take_batch()
            if not batch:
                continue
            await self._score(loop, batch)

    async def _score(self, loop: asyncio.AbstractEventLoop, batch: list[_Slice]) -> None:
        """Score ``batch`` in one model call; if it fails, split it and retry the halves (isolation)."""
        batch = [part for part in batch if not part.done()]  # cancelled at their deadline meanwhile
        if not batch:
            return
        left: float | None = None  # the latest deadline in the batch bounds a reranker that takes timeout=
        if self._takes_timeout and all(part.item.deadline is not None for part in batch):
            left = max(part.item.deadline or 0.0 for part in batch) - time.monotonic()
        requests = len({id(part.item) for part in batch})
        try:
            raw = await self._call(loop, [p for part in batch for p in part.pairs], requests, left)
        except Exception as exc:  # noqa: BLE001 - split, or hand to the request, which decides (fail open/closed)
            if len(batch) == 1 or isinstance(exc, _NOT_INPUT_ERRORS):
                for part in batch:
                    part.fail(exc)
                return
            log.warning(
                "reranker %r failed on a batch of %d requests (%s: %s); retrying in halves so that only "
                "the request that causes it fails",
                self.name,
                requests,
                type(exc).__name__,
                exc,
            )
            half = len(batch) // 2
            await self._score(loop, batch[:half])
            await self._score(loop, batch[half:])
            return
        start = 0
        for part in batch:
            n = part.end - part.start
            part.deliver(raw[start : start + n])
            start += n

    async def _call(
        self,
        loop: asyncio.AbstractEventLoop,
        all_pairs: list[tuple[str, str]],
        requests: int,
        timeout_s: float | None = None,
    ) -> np.ndarray:
        """One model call in the model thread; checks the output and updates the throughput estimates."""
        assert self._executor is not None
        self._busy_pairs = len(all_pairs)
        t0 = time.perf_counter()
        try:
            if timeout_s is not None:
                raw = await loop.run_in_executor(
                    self._executor, partial(self._predict_fn, all_pairs, timeout=max(timeout_s, 0.001))
                )
            else:
                raw = await loop.run_in_executor(self._executor, self.reranker.predict, all_pairs)
            raw = np.asarray(raw, dtype=np.float32).reshape(-1)
            if raw.shape[0] != len(all_pairs):
                raise RerankerUnavailableError(
                    f"Reranker {self.name!r} returned {raw.shape[0]} scores for {len(all_pairs)} pairs; "
                    "check its predict() implementation."
                )
            if not np.all(np.isfinite(raw)):
                raise RerankerUnavailableError(
                    f"Reranker {self.name!r} returned non-finite scores; check the model dtype (try fp32)."
                )
        finally:
            self._busy_pairs = 0
        dt = time.perf_counter() - t0
        if self._full_slice and self._full_slice == len(all_pairs) and dt > 0 and self.preempt_s is not None:
            # feedback: the pairs that would have taken preempt_ms in this call, smoothed over calls
            fit = len(all_pairs) * self.preempt_s / dt
            self._slice_f = fit if self._slice_f == 0 else 0.7 * self._slice_f + 0.3 * fit
        self._full_slice = 0
        rate = len(all_pairs) / dt if dt > 0 else 0.0
        self._pairs_per_s = rate if self._pairs_per_s == 0 else 0.8 * self._pairs_per_s + 0.2 * rate
        self._call_s = dt if self._call_s == 0 else 0.8 * self._call_s + 0.2 * dt
        if self.on_batch is not None:
            self.on_batch(len(all_pairs), requests, dt)
        return raw
