"""Work ahead in a thread: a producer fills a bounded queue while the caller consumes it.

Used wherever one stage should run while the next one works: the face pipeline decodes frames
while it detects faces (:mod:`aucli.faces.pipeline`), and ``aucli predict`` extracts the next
faces while the model scores a batch (:mod:`aucli.engine.predict`). The producer is a daemon
thread running ``produce(put)``; ``put(item)`` blocks while the queue is full and returns False
once the consumer has stopped, so the producer can return early. An error raised by ``produce``
reaches the consumer after the items produced before it, and is raised there.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["Producer", "Put"]

#: ``put(item) -> bool``: queue one item; False once the consumer has stopped.
Put = Callable[[Any], bool]

_END = object()
_POLL_SECONDS = 0.1


class Producer(threading.Thread):
    """A daemon thread running ``produce(put)`` into a queue of at most ``maxsize`` items.

    Typical use::

        producer = Producer("name", 16, produce)
        producer.start()
        try:
            for item in producer.drain():
                ...
        finally:
            producer.stop()
    """

    def __init__(self, name: str, maxsize: int, produce: Callable[[Put], None]) -> None:
        super().__init__(name=name, daemon=True)
        self.items: queue.Queue = queue.Queue(maxsize=max(int(maxsize), 1))
        self.stopped = threading.Event()
        self._produce = produce

    def put(self, item: Any) -> bool:
        """Queue ``item``; False once the consumer has stopped (the producer should return)."""
        while not self.stopped.is_set():
            try:
                self.items.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            self._produce(self.put)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            self.put(error)
            return
        self.put(_END)

    def drain(self, cancelled: threading.Event | None = None) -> Iterator[Any]:
        """The items in order until the producer ends; raises the producer's error; returns early once
        ``cancelled`` is set (a consumer that is itself a producer passes its own ``stopped``)."""
        while cancelled is None or not cancelled.is_set():
            try:
                item = self.items.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self, timeout: float = 10.0) -> None:
        """Tell the producer to stop and wait for it (at most ``timeout`` seconds)."""
        self.stopped.set()
        if self.ident is not None:  # started
            self.join(timeout=timeout)
