import { describe, expect, it } from "vitest";
import { footprintPolygon, parseProperties, pointHref, radecToXyz, skyPoints, xyzToRadec } from "./sky";

describe("HiPS properties", () => {
  it("reads key = value lines, skipping comments", () => {
    const p = parseProperties("# AstrID\nhips_order          = 10\nhips_pixel_cut = 480.1 2033\n\nbad line\nobs_title = a = b\n");
    expect(p).toEqual({ hips_order: "10", hips_pixel_cut: "480.1 2033", obs_title: "a = b" });
  });
});

describe("sky points", () => {
  it("keeps valid positions, objects link to their page", () => {
    const pts = skyPoints(
      [{ id: 1, ra: 10, dec: 5, mag: 19 }, { id: 2, ra: Number.NaN, dec: 0 }, { id: 3, ra: 1, dec: 95 }],
      [{ id: 7, ra: 10, dec: 5, peak_mag: 18.5, label: "real" }],
    );
    expect(pts.map((p) => `${p.kind}${p.id}`)).toEqual(["detection1", "object7"]);
    expect(pts[1].mag).toBe(18.5);
    expect(pointHref(pts[1])).toBe("/object?id=7");
    expect(pointHref(pts[0])).toBe("/detection?id=1");
  });
  it("closes a footprint and drops a degenerate one", () => {
    expect(footprintPolygon([[0, 0], [1, 0], [1, 1], [0, 1]])).toEqual([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]);
    expect(footprintPolygon([[0, 0], [1, Number.NaN]])).toEqual([]);
  });
});

describe("celestial sphere", () => {
  it("puts the poles and the equinox on the axes", () => {
    const close = (a: number[], b: number[]) => a.forEach((v, i) => expect(v).toBeCloseTo(b[i], 12));
    close(radecToXyz(0, 90), [0, 1, 0]);
    close(radecToXyz(0, 0), [1, 0, 0]);
    close(radecToXyz(90, 0), [0, 0, -1]);
    close(radecToXyz(180, -90, 2), [0, -2, 0]);
  });
  it("round-trips (ra, dec)", () => {
    for (const [ra, dec] of [[0.5, 1.0], [318.1, -66.0], [120, 85], [359.999, -0.001]]) {
      const [r, d] = xyzToRadec(...radecToXyz(ra, dec, 3));
      expect(r).toBeCloseTo(ra, 9);
      expect(d).toBeCloseTo(dec, 9);
    }
  });
});
