"""The streak tests: collinear groups of one exposure's candidates, trails across a stamp."""

from __future__ import annotations

import math

import numpy as np
import pytest

from astrid.science.simulate import simulate_pair
from astrid.science.streaks import (
    DEFAULT_TOLERANCE_PX,
    StreakInputError,
    chance_probability,
    collinear_groups,
    false_alarms,
    image_streaks,
    stamp_trail,
    streak_labels,
    tangent_plane,
)

QUAD = (3080, 3072)  # a ZTF quadrant, (ny, nx)
AREA = float(QUAD[0] * QUAD[1])
CHORD = math.hypot(*QUAD)


def _line(rng: np.random.Generator, n: int, jitter: float) -> np.ndarray:
    """``n`` points on a random line across a ZTF quadrant, perpendicular jitter (px)."""
    centre = rng.uniform(1000.0, 2000.0, 2)
    ang = rng.uniform(0.0, math.pi)
    u, normal = np.array([math.cos(ang), math.sin(ang)]), np.array([-math.sin(ang), math.cos(ang)])
    t = np.sort(rng.uniform(-900.0, 900.0, n))
    return centre + t[:, None] * u + rng.uniform(-jitter, jitter, (n, 1)) * normal


def test_false_alarms_closed_form() -> None:
    p = chance_probability(2.0, AREA, CHORD)
    assert p == pytest.approx(2 * 2.0 * CHORD / AREA)
    # k = n: all the n - 2 others on the line through two: C(n, 2) p^(n - 2)
    assert false_alarms(4, 4, p) == pytest.approx(6 * p**2, rel=1e-12)
    assert false_alarms(10, 10, p) == pytest.approx(45 * p**8, rel=1e-9)
    # k = 2 is certain: every pair defines a line
    assert false_alarms(10, 2, p) == pytest.approx(45.0)
    # more points needed on busier images (the a-priori defaults: 4 members, NFA 1e-3)
    assert false_alarms(15, 5, p) < 1e-3 < false_alarms(15, 4, p)
    assert false_alarms(200, 10, p) < 1e-3 < false_alarms(200, 9, p)


def test_finds_a_dotted_trail_among_uniform_candidates() -> None:
    rng = np.random.default_rng(3)
    trail = _line(rng, 9, jitter=0.8 * DEFAULT_TOLERANCE_PX)
    others = np.column_stack([rng.uniform(0, QUAD[1], 40), rng.uniform(0, QUAD[0], 40)])
    pts = np.vstack([others[:20], trail, others[20:]])
    groups = collinear_groups(pts[:, 0], pts[:, 1], area=AREA, chord=CHORD)
    assert len(groups) == 1
    assert sorted(groups[0].members.tolist()) == list(range(20, 29))
    assert groups[0].rms <= DEFAULT_TOLERANCE_PX and groups[0].false_alarms < 1e-3
    labels = streak_labels(len(pts), groups)
    assert (labels[20:29] == 0).all() and (np.delete(labels, range(20, 29)) == -1).all()


def test_two_trails_and_a_short_one() -> None:
    rng = np.random.default_rng(5)
    a, b = _line(rng, 12, 1.0), _line(rng, 6, 1.0)
    c = _line(rng, 3, 0.0)  # three points: never enough
    pts = np.vstack([a, b, c])
    groups = collinear_groups(pts[:, 0], pts[:, 1], area=AREA, chord=CHORD)
    assert [len(g.members) for g in groups] == [12, 6]
    assert sorted(groups[1].members.tolist()) == list(range(12, 18))


def test_uniform_candidates_make_no_streak() -> None:
    """The chance rate the NFA bound promises (<= 1e-3 per image): none in 200 images."""
    rng = np.random.default_rng(11)
    found = 0
    for n in (10, 30, 100) * 20 + (300,) * 2:
        x, y = rng.uniform(0, QUAD[1], n), rng.uniform(0, QUAD[0], n)
        found += len(collinear_groups(x, y, area=AREA, chord=CHORD))
    assert found == 0


def test_great_circles_are_lines_on_the_tangent_plane() -> None:
    """A satellite's track (a great circle), near the pole and across RA 0, projects onto
    a straight line: residuals far below the 2-arcsec tolerance."""
    for pole_dec, pole_ra in ((10.0, 30.0), (-60.0, 359.0), (2.0, 200.0)):
        axis = np.array(
            [
                math.cos(math.radians(pole_dec)) * math.cos(math.radians(pole_ra)),
                math.cos(math.radians(pole_dec)) * math.sin(math.radians(pole_ra)),
                math.sin(math.radians(pole_dec)),
            ]
        )
        e1 = np.cross(axis, [0.0, 0.0, 1.0])
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(axis, e1)
        t = np.radians(np.linspace(0.0, 0.9, 12))  # 0.9 degrees of track
        v = np.outer(np.cos(t), e1) + np.outer(np.sin(t), e2)
        ra = np.degrees(np.arctan2(v[:, 1], v[:, 0])) % 360.0
        dec = np.degrees(np.arcsin(v[:, 2]))
        xi, eta = tangent_plane(ra, dec)
        (g,) = collinear_groups(xi, eta, area=AREA, chord=CHORD)
        assert len(g.members) == 12 and g.rms < 1e-6
        assert g.length == pytest.approx(0.9 * 3600.0, rel=1e-3)


def test_far_off_positions_do_not_move_the_tangent_point() -> None:
    ra = np.array([40.0, 40.01, 40.02, 5.38])
    dec = np.array([-11.0, -11.0, -11.0, 54.69])
    xi, eta = tangent_plane(ra, dec)
    assert np.isfinite(xi[:3]).all() and abs(eta[0]) < 1.0 and np.isnan(xi[3])


def test_bad_input_is_a_named_error() -> None:
    with pytest.raises(StreakInputError, match="finite"):
        collinear_groups(np.array([0.0, np.nan]), np.zeros(2), area=AREA, chord=CHORD)
    with pytest.raises(StreakInputError, match="one shape"):
        collinear_groups(np.zeros(3), np.zeros(2), area=AREA, chord=CHORD)
    with pytest.raises(StreakInputError, match="area"):
        collinear_groups(np.zeros(3), np.zeros(3), area=0.0, chord=CHORD)
    with pytest.raises(StreakInputError, match="2-D"):
        stamp_trail(np.zeros(5))
    assert collinear_groups(np.zeros(0), np.zeros(0), area=AREA, chord=CHORD) == []


def _stamp(rng: np.random.Generator, *, line: bool, dots: bool = False) -> np.ndarray:
    yy, xx = np.mgrid[0:63, 0:63] - 31.0
    sigma = 3.0 / 2.355
    out = rng.normal(0.0, 1.0, (63, 63))
    if line:  # a trail through the centre at 30 degrees, 8 sigma on its ridge
        d = np.abs(-xx * math.sin(math.radians(30)) + yy * math.cos(math.radians(30)))
        if dots:
            along = xx * math.cos(math.radians(30)) + yy * math.sin(math.radians(30))
            on = np.abs((along + 10.0) % 20.0 - 10.0) < 2.5
            out += 20.0 * np.exp(-0.5 * (d / sigma) ** 2) * on
        else:
            out += 8.0 * np.exp(-0.5 * (d / sigma) ** 2)
    else:  # a very bright point source
        out += 3.0e4 * np.exp(-0.5 * (xx**2 + yy**2) / sigma**2)
    return out


def test_a_trail_across_the_stamp_is_found_a_star_is_not() -> None:
    rng = np.random.default_rng(2)
    trail = stamp_trail(_stamp(rng, line=True))
    assert trail.is_trail and trail.extent > 60 and trail.axis_ratio > 10
    assert trail.angle == pytest.approx(30.0, abs=3.0)
    star = stamp_trail(_stamp(rng, line=False))
    assert not star.is_trail and star.extent < 0.75 * 63
    dotted = stamp_trail(_stamp(rng, line=True, dots=True))
    assert not dotted.is_trail  # not connected: the group test's job
    masked = _stamp(rng, line=True)
    masked[:, 45:] = np.nan  # NaN is sky
    assert stamp_trail(masked).extent < trail.extent
    assert not stamp_trail(np.full((63, 63), np.nan)).is_trail


def test_image_streaks_names_both_tests() -> None:
    rng = np.random.default_rng(8)
    pts = np.vstack([_line(rng, 7, 0.5), [[100.0, 200.0], [2000.0, 900.0]]])
    stamps = [None] * 7 + [_stamp(rng, line=False), _stamp(rng, line=True)]
    why = image_streaks(pts[:, 0], pts[:, 1], QUAD, stamps)  # type: ignore[arg-type]
    assert all(w is not None and "7 candidates" in w for w in why[:7])
    assert why[7] is None
    assert why[8] is not None and "crosses the stamp" in why[8]


@pytest.mark.parametrize("dotted", [1.0, 0.0])
def test_simulated_trail_truth(dotted: float) -> None:
    """The simulator's trails: exact truth rows on one straight line, light in the new
    image only, and border to border."""
    shape = (256, 256)
    p = simulate_pair(
        shape, 100, seed=4, n_transients=3, n_streaks=1, streak_dotted_fraction=dotted
    )
    t = p.truth[p.truth["kind"] == "streak"]
    assert len(t) >= 2 and set(t["trail"]) == {0} and set(t["epoch"]) == {"new"}
    assert (p.truth["trail"][p.truth["kind"] != "streak"] == -1).all()
    x, y = np.asarray(t["x_new"]), np.asarray(t["y_new"])
    spacing = np.hypot(np.diff(x), np.diff(y))
    if dotted:
        assert 8.0 <= spacing.mean() <= 40.0
    else:
        assert spacing == pytest.approx(0.5)
    (g,) = collinear_groups(
        x, y, area=float(shape[0] * shape[1]), chord=math.hypot(*shape), tolerance=1e-6
    )
    assert len(g.members) == len(t)
    # border to border: both ends within a spacing of the 12-px margin
    ends = np.array([[x[0], y[0]], [x[-1], y[-1]]])
    dist = np.minimum(ends, 255 - ends).min(axis=1)
    assert (dist <= 12.0 + spacing.max() + 1e-6).all()
    # the light is there: new minus reference at the spots is well above the noise
    ix, iy = np.round(x).astype(int), np.round(y).astype(int)
    diff = p.new.data - p.ref.data * float(p.truth.meta["flux_ratio"])
    noise = 1.4826 * np.median(np.abs(diff - np.median(diff)))
    assert np.median(diff[iy, ix]) > 3 * noise


def test_no_streak_leaves_the_simulation_unchanged() -> None:
    a = simulate_pair((128, 128), 60, seed=9, n_transients=2)
    b = simulate_pair((128, 128), 60, seed=9, n_transients=2, n_streaks=0)
    assert np.array_equal(a.new.data, b.new.data) and "streak" not in set(a.truth["kind"])


def test_a_source_seen_twice_counts_once() -> None:
    """A packet sent twice (or a double detection) is one site: three distinct points on a
    line plus two duplicates are no streak; with a fourth point the duplicates join it."""
    x = np.array([100.0, 600.0, 1100.0, 100.3, 600.0])
    y = np.array([200.0, 500.0, 800.0, 200.2, 500.0])
    assert collinear_groups(x, y, area=AREA, chord=CHORD) == []
    x4, y4 = np.append(x, 1600.0), np.append(y, 1100.0)
    (g,) = collinear_groups(x4, y4, area=AREA, chord=CHORD)
    assert sorted(g.members.tolist()) == [0, 1, 2, 3, 4, 5]
    assert g.false_alarms == pytest.approx(false_alarms(4, 4, chance_probability(2.0, AREA, CHORD)))
