#!/usr/bin/env python3
"""False-positive rate of the coalesced MSE layouts on random request/response traffic
(docs/detection.md, "False positives: what the rules cost"): sessions of 3..6 rounds, each
request uniform 16..2048 bytes, each response log-uniform 1 B .. 1 MiB (the `rpc` rows of
tests/e2e/_benign.py), every flight random-looking (the worst case: the randomness tests pass).
Counts the sessions whose first flights meet `coalesced_first_block`, `coalesced_bare_reply`
and `coalesced_control_message` (crates/swarmwall-core/src/classify/tcp/mse.rs), and prints the
analytic rate of the bare reply (too rare to measure well by sampling). REQUEST_MIN=1 makes
requests uniform 1..2048 bytes (requests of 4, 5 or 9 bytes become possible).

Usage: [REQUEST_MIN=16] scripts/mse_rpc_simulation.py [SESSIONS] [SEED]   (default 2,000,000 and 17)
"""
import os
import math
import random
import sys


def main():
    sessions = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 17)
    request_min = int(os.environ.get("REQUEST_MIN", "16"))
    first_block = bare = control = either = 0
    for _ in range(sessions):
        flights = []
        for _ in range(rng.randint(3, 6)):
            flights.append(rng.randint(request_min, 2048))
            flights.append(max(1, int(2 ** rng.uniform(0, 20))))
        flights += [0] * (8 - len(flights))
        l1, l2, l3, l4, l5, l6 = flights[:6]
        dh = 96 <= l1 <= 608 and 96 <= l2 <= 608
        hit_first_block = dh and 124 <= l3 <= 636 and 82 <= l4 <= 2642 and 22 <= l5 <= 1024 and l6 >= 16397
        hit_bare = dh and 56 <= l3 <= 636 and l4 == 82 and (68 if l3 < 124 else 5) <= l5 <= 1024
        # Flights 3..5 as coalesced (flight 5 from 5 bytes), then one of flights 6..8 (those that
        # exist) of exactly 4, 5 or 9 bytes, every flight before it at most 1,024.
        hit_control = False
        if dh and 124 <= l3 <= 636 and 82 <= l4 <= 2642 and 5 <= l5 <= 1024:
            for later in flights[5:8]:
                if later == 0 or later > 1024:
                    break
                if later in (4, 5, 9):
                    hit_control = True
                    break
        first_block += hit_first_block
        bare += hit_bare
        control += hit_control
        either += hit_first_block or hit_bare or hit_control
    print(f"sessions {sessions}: coalesced_first_block {first_block} ({first_block / sessions * 1e4:.2f} in 10,000), "
          f"coalesced_bare_reply {bare} ({bare / sessions * 1e6:.2f} in 1,000,000), "
          f"coalesced_control_message {control} ({control / sessions * 1e4:.2f} in 10,000), "
          f"any {either} ({either / sessions * 1e4:.2f} in 10,000)")
    p1 = (608 - 96 + 1) / (2048 - 16 + 1)
    p2 = math.log2(609 / 96) / 20
    requests = 2048 - 16 + 1
    p4 = math.log2(83 / 82) / 20
    # Flight 3 of 124..636 with flight 5 of 16..1024, or 56..123 with flight 5 of 68..1024.
    p35 = (636 - 124 + 1) / requests * (1024 - 16 + 1) / requests \
        + (123 - 56 + 1) / requests * (1024 - 68 + 1) / requests
    print(f"analytic coalesced_bare_reply: {p1 * p2 * p35 * p4 * 1e6:.2f} in 1,000,000")


if __name__ == "__main__":
    main()
