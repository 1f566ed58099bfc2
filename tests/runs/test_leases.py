"""Leases and the worker registry on a real redis-server (engine/runs/leases.py): one
winner per partition, compare-and-set renewal and release, the fair share, and takeover
of a dead worker's partitions. Heartbeats run on an injected clock; a lease's expiry is
Redis's own, stood in for by deleting the key (no test waits on a real TTL)."""

from __future__ import annotations

from collections import Counter

import pytest

from engine.runs.leases import Leases, fair_share, holder_of, read_leases, read_workers

ORGS = [f"org-{n:02d}" for n in range(10)]


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def workers(client, redis_prefix, clock, count, ttl=3.0):
    return [
        Leases(client, prefix=redis_prefix, ttl=ttl, worker_id=f"w{n}", clock=clock)
        for n in range(count)
    ]


def settle(group, partitions, rounds=4):
    """Balance steps in turn, the surplus released at once (what a worker does once the
    partition's pipeline has stopped)."""
    for _ in range(rounds):
        for leases in group:
            step = leases.balance(partitions)
            for partition in step.surplus:
                leases.release(partition)


def test_one_winner_and_compare_and_set(redis_client, redis_prefix):
    a, b = workers(redis_client, redis_prefix, Clock(), 2)
    assert a.acquire("org-1")
    assert not b.acquire("org-1")
    # b cannot renew or release what it does not hold
    b.held["org-1"] = "w1/forged"
    assert not b.renew("org-1") and "org-1" not in b.held
    b.held["org-1"] = "w1/forged"
    b.release("org-1")
    assert holder_of(redis_client.get(a.key("org-1")).decode()) == "w0"
    assert a.renew("org-1")
    a.release("org-1")
    assert redis_client.get(a.key("org-1")) is None
    assert b.acquire("org-1")


def test_three_workers_spread_ten_partitions(redis_client, redis_prefix):
    group = workers(redis_client, redis_prefix, Clock(), 3)
    settle(group, ORGS)
    counts = sorted(len(w.held) for w in group)
    assert sum(counts) == 10 and max(counts) == fair_share(10, 3) == 4
    owners = Counter(p for w in group for p in w.held)
    assert set(owners) == set(ORGS) and set(owners.values()) == {1}
    # Redis agrees with what each worker believes
    for info in read_leases(redis_client, redis_prefix, ORGS):
        assert info.partition in next(w.held for w in group if w.worker_id == info.holder)
        assert 0 < info.ttl_left <= 3.0


def test_a_first_worker_hands_back_its_surplus_when_others_join(redis_client, redis_prefix):
    clock = Clock()
    first, second, third = workers(redis_client, redis_prefix, clock, 3)
    first.balance(ORGS)
    assert len(first.held) == 10
    second.balance(ORGS)
    third.balance(ORGS)
    step = first.balance(ORGS)
    assert step.live_workers == 3 and step.share == 4 and len(step.surplus) == 6
    for partition in step.surplus:
        first.release(partition)
    settle([second, third, first], ORGS)
    assert sorted(len(w.held) for w in (first, second, third))[-1] == 4
    assert sum(len(w.held) for w in (first, second, third)) == 10


def test_below_its_share_a_worker_is_eager_only_while_a_partition_may_come_free(
    redis_client, redis_prefix
):
    """A worker joining one that holds everything is below its share and the other is
    over it: the surplus comes back soon, worth a step every half second. Once ten are
    spread over three (4/4/2 or 4/3/3) a worker below its share of 4 stays there, and
    nothing comes free until a worker joins or leaves: no eager steps (it took one
    every half second, for good)."""
    clock = Clock()
    first, second, third = workers(redis_client, redis_prefix, clock, 3)
    assert not first.balance(ORGS).eager and len(first.held) == 10
    step = second.balance(ORGS)
    assert step.share == 5 and not second.held and step.eager
    settle([first, second, third], ORGS)
    steps = {w.worker_id: w.balance(ORGS) for w in (first, second, third)}
    below = [w for w in (first, second, third) if len(w.held) < steps[w.worker_id].share]
    assert below and sum(len(w.held) for w in (first, second, third)) == 10
    assert not any(step.eager for step in steps.values())


def test_a_dead_workers_partitions_are_taken_over_after_their_ttl(redis_client, redis_prefix):
    clock = Clock()
    group = workers(redis_client, redis_prefix, clock, 3)
    settle(group, ORGS)
    dead = group[0]
    orphaned = set(dead.held)
    assert orphaned
    # The others live on; the dead one neither renews nor beats. Past a TTL of event
    # clock it no longer counts as live, and past a TTL of Redis's clock its leases
    # expire: here at once, by hand, so no step of the test races a real TTL.
    clock.now += 3.5
    for leases in group[1:]:
        leases.balance(ORGS)
    redis_client.delete(*(dead.key(p) for p in orphaned))
    survivors = group[1:]
    settle(survivors, ORGS)
    assert sorted(len(w.held) for w in survivors) == [5, 5]
    assert {p for w in survivors for p in w.held} == set(ORGS)
    # the dead worker, waking up, has lost every lease and may not renew any
    step = dead.balance(ORGS)
    assert sorted(step.lost) == sorted(orphaned) and not dead.held


def test_a_lease_lost_and_taken_again_in_one_step_is_kept(redis_client, redis_prefix):
    """Redis away past the TTL: the step's renewal finds the lease gone and the same step
    takes it again under a new token. Forgetting the lost lease (what a worker does when
    it drops the partition's stale pipeline) keeps the new one, which Redis holds."""
    (leases,) = workers(redis_client, redis_prefix, Clock(), 1)
    leases.balance(ORGS[:1])
    lost = leases.held["org-00"]
    redis_client.delete(leases.key("org-00"))  # it expired while Redis was away
    step = leases.balance(ORGS[:1])
    assert step.lost == ["org-00"] and step.acquired == ["org-00"]
    taken = leases.held["org-00"]
    assert taken != lost and redis_client.get(leases.key("org-00")).decode() == taken
    leases.forget("org-00", lost)
    assert leases.held == {"org-00": taken}
    leases.release("org-00", lost)  # neither does a release of the lost token touch it
    assert leases.held == {"org-00": taken} and redis_client.exists(leases.key("org-00"))
    assert leases.renew("org-00")
    leases.forget("org-00", taken)
    assert not leases.held


def test_registry_and_a_clean_leave(redis_client, redis_prefix):
    clock = Clock()
    a, b = workers(redis_client, redis_prefix, clock, 2)
    settle([a, b], ORGS[:3])
    found = {w.worker_id: w for w in read_workers(redis_client, redis_prefix, clock(), a.ttl)}
    assert set(found) == {"w0", "w1"}
    assert sorted(found["w0"].partitions + found["w1"].partitions) == ORGS[:3]
    assert found["w0"].alive and found["w0"].pid is not None
    clock.now += 10
    assert not any(w.alive for w in read_workers(redis_client, redis_prefix, clock(), a.ttl))
    held = list(a.held)
    a.leave()
    assert all(redis_client.get(a.key(p)) is None for p in held)
    assert "w0" not in {w.worker_id for w in read_workers(redis_client, redis_prefix, clock(), 3)}


def test_a_ttl_under_a_second_is_refused(redis_client, redis_prefix):
    with pytest.raises(ValueError, match="at least 1 second"):
        Leases(redis_client, prefix=redis_prefix, ttl=0.5)
