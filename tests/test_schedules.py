import re

import pytest

from deepcache import DeepCacheConfig, nonuniform_full_steps, uniform_full_steps


def test_uniform_full_steps():
    assert uniform_full_steps(10, 3) == (0, 3, 6, 9)
    assert uniform_full_steps(9, 3) == (0, 3, 6)
    assert uniform_full_steps(5, 1) == (0, 1, 2, 3, 4)
    assert uniform_full_steps(2, 5) == (0,)


# Computed with the reference `sample_from_quad_center` (complex arithmetic, int32 cast).
@pytest.mark.parametrize(
    "steps, interval, center, pow, expected",
    [
        (50, 5, 15, 1.4, (0, 5, 9, 13, 17, 21, 26, 31, 37, 43)),
        (50, 6, 15, 1.4, (0, 5, 10, 15, 18, 24, 29, 36, 42)),
        (50, 10, 15, 1.4, (0, 9, 17, 26, 37)),
        (50, 3, 15, 1.4, (0, 3, 6, 8, 11, 13, 15, 17, 20, 22, 25, 28, 32, 35, 38, 42, 46)),
    ],
)
def test_nonuniform_full_steps_match_the_reference(steps, interval, center, pow, expected):
    assert nonuniform_full_steps(steps, interval, center, pow) == expected


def test_nonuniform_lowers_pow_until_the_steps_are_distinct():
    # (10, 2, c=0, p=1.6): the grid at 1.6 collides; the reference lowers p and finds 5 steps.
    steps = nonuniform_full_steps(10, 2, 0, 1.6)
    assert len(steps) == 5 and steps[0] == 0 and list(steps) == sorted(set(steps)) and steps[-1] < 10


def test_nonuniform_defaults_are_the_published_values_at_50_steps():
    assert nonuniform_full_steps(50, 5) == nonuniform_full_steps(50, 5, 15, 1.4)
    assert nonuniform_full_steps(7, 1) == tuple(range(7))


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: uniform_full_steps(10, 0), ValueError, "`cache_interval` must be a positive integer, but got 0"),
        (lambda: uniform_full_steps(10, 2.5), TypeError, "`cache_interval` must be a positive integer"),
        (lambda: uniform_full_steps(0, 2), ValueError, "`num_steps`"),
        (lambda: nonuniform_full_steps(50, 5, 15, 1.0), ValueError, "`pow` must be greater than 1, but got 1.0"),
        (lambda: nonuniform_full_steps(50, 5, 50, 1.4), ValueError, "`center` must be in [0, 49]"),
        (lambda: nonuniform_full_steps(50, 5, -1, 1.4), ValueError, "`center` must be in [0, 49]"),
        (lambda: nonuniform_full_steps(50, 5, 1.5, 1.4), TypeError, "`center` must be an integer"),
        (lambda: nonuniform_full_steps(6, 2, 3, 1.02), ValueError, "No non-uniform schedule"),
        (lambda: DeepCacheConfig(cache_interval=0), ValueError, "`cache_interval`"),
        (lambda: DeepCacheConfig(cache_interval=3, uniform="no"), TypeError, "`uniform`"),
        (lambda: DeepCacheConfig(cache_interval=3, pow=0.5), ValueError, "`pow`"),
        (lambda: DeepCacheConfig(cache_interval=3, center=-2), ValueError, "`center`"),
    ],
)
def test_bad_parameters_raise_clear_errors(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()


def test_config_full_steps_picks_the_schedule():
    assert DeepCacheConfig(cache_interval=3).full_steps(7) == (0, 3, 6)
    assert DeepCacheConfig(cache_interval=5, uniform=False, center=15, pow=1.4).full_steps(50)[:3] == (0, 5, 9)
    assert not DeepCacheConfig().enabled and DeepCacheConfig(cache_interval=2).enabled
