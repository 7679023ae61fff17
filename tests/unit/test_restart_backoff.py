"""How long `snapshotctl up` waits before restarting a part that died."""

from services.snapshots.supervisor import Backoff


def test_a_part_that_keeps_dying_waits_twice_as_long_each_time_up_to_the_cap():
    backoff = Backoff(first=1, cap=30, reset_after=60)

    waits = [backoff.after_death(ran_seconds=2) for _ in range(7)]

    assert waits == [1, 2, 4, 8, 16, 30, 30]


def test_a_part_that_ran_a_while_before_dying_waits_the_first_delay_again():
    backoff = Backoff(first=1, cap=30, reset_after=60)
    for _ in range(4):
        backoff.after_death(ran_seconds=2)

    assert backoff.after_death(ran_seconds=61) == 1
    assert backoff.after_death(ran_seconds=2) == 2
