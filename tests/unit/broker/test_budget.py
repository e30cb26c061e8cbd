from strom.broker.budget import LARGE_FRAME, RequestBudget

MB = 1 << 20


def test_takes_up_to_the_limit_and_wakes_waiters_when_given_back():
    b = RequestBudget(10 * MB)
    taken = 0
    while b.try_take(600_000):
        taken += 1
    assert taken == 10 * MB // 600_000
    woken = []
    b.wait(lambda: woken.append(1))
    b.give(600_000)
    assert woken == [1] and b.try_take(600_000)


def test_large_frames_hold_at_most_half_so_small_ones_still_pass():
    b = RequestBudget(256 * MB)
    assert b.try_take(99 * MB)
    assert not b.try_take(99 * MB)  # a second large frame would pass 128 MiB
    assert b.try_take(LARGE_FRAME)  # small ones still fit
    b.give(99 * MB)
    assert b.try_take(99 * MB)


def test_one_frame_always_fits_when_nothing_of_its_kind_is_held():
    b = RequestBudget(MB // 2)
    assert b.try_take(100 * MB)  # larger than the whole budget, but alone
    assert b.try_take(MB // 2)  # small frames are not starved by it
    assert not b.try_take(MB // 2)  # ... up to the limit
