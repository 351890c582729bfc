"""How the policy node hears instructions from latched and plain publishers alike.

DDS matches a reader only with writers that offer at least the durability it requests: a transient-local
(latched) subscription never hears a volatile publisher, which is what a planner's plain
``create_publisher(String, "instruction", 10)`` is (rclpy logs an incompatible-QoS warning and nothing
arrives). A volatile subscription hears both kinds but misses what was published before it existed. So the
node subscribes twice, and a latched publisher's message, delivered to both, must count once.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

# latched: a policy that starts (or restarts) after the instruction was sent still gets it
INSTRUCTION_QOS = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
# plain publishers (volatile); also hears latched ones as they publish
INSTRUCTION_QOS_VOLATILE = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE
)
# the second copy of one message arrives within microseconds; a plain publisher's message of the same text
# later than this is never taken for one
COPY_WINDOW_S = 1.0


class CopyFilter:
    """Drops the copy a latched publisher's message makes on the node's other instruction subscription.

    Each accepted delivery awaits one copy: the same text through the other subscription within
    COPY_WINDOW_S. rclpy's EventsExecutor (the node's default) passes no message info (publisher, sequence
    number) to callbacks, so text, route and time are the key. Deliveries of two quick messages may
    interleave across the two subscriptions (A1 A2 B1 B2): each copy consumes the oldest message awaiting it.
    Not thread-safe: the node calls it from one mutually exclusive callback group.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # (the text's hash, route, when), oldest first: a hash, so that oversized texts (refused after this
        # filter) are not held here
        self._awaiting: deque[tuple[int, int, float]] = deque(maxlen=64)

    def accept(self, text: str, route: int) -> bool:
        now = self._clock()
        key = hash(text)
        while self._awaiting and now - self._awaiting[0][2] > COPY_WINDOW_S:
            self._awaiting.popleft()
        for i, (waiting, other, _) in enumerate(self._awaiting):
            if waiting == key and other != route:
                del self._awaiting[i]
                return False
        self._awaiting.append((key, route, now))
        return True
