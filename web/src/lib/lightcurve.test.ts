import { describe, expect, it } from "vitest";
import { byBand, frame, linear, parseLightCurve, ticks } from "./lightcurve";

const rows = [
  { kind: "detection", mjd: 60010, filter: "r", mag: 18.0, mag_err: 0.1 },
  { kind: "forced", mjd: 60005, filter: "r", mag: 19.5, mag_err: 0.3 },
  { kind: "upper_limit", mjd: 60000, filter: "g", mag: null, limit: 20.5 },
  { kind: "detection", mjd: 60012, filter: "g", mag: 17.8, mag_err: 0.05 },
  { kind: "forced", mjd: 60001, filter: "g", mag: null, flux: 1.0, limit: null },
];

describe("light curve parsing", () => {
  it("keeps detections, forced points and limits, sorted by time", () => {
    const pts = parseLightCurve(rows);
    expect(pts.map((p) => p.kind)).toEqual(["limit", "forced", "detection", "detection"]);
    expect(pts[0]).toMatchObject({ mag: 20.5, band: "g", err: 0 });
    expect([...byBand(pts).keys()].sort()).toEqual(["g", "r"]);
  });

  it("reads the grouped form", () => {
    const pts = parseLightCurve({ detections: [{ mjd: 1, mag: 18, band: "r" }], upper_limits: [{ mjd: 2, limiting_mag: 20 }] });
    expect(pts.map((p) => p.kind)).toEqual(["detection", "limit"]);
  });
});

describe("light curve scaling", () => {
  it("maps linearly and survives a zero-width domain", () => {
    const s = linear(0, 10, 100, 200);
    expect(s(5)).toBeCloseTo(150, 9);
    expect(linear(3, 3, 0, 10)(3)).toBeCloseTo(5, 9);
  });

  it("puts bright magnitudes at the top and includes error bars and limit arrows", () => {
    const pts = parseLightCurve(rows);
    const f = frame(pts, 600, 300, 40, 0.3);
    // brighter (smaller) magnitude => smaller y (higher on screen)
    expect(f.y(17.8)).toBeLessThan(f.y(18.0));
    const [m0, m1] = f.y.domain;
    expect(m0).toBeLessThanOrEqual(17.8 - 0.05);
    expect(m1).toBeGreaterThanOrEqual(20.5 + 0.3); // arrow below the faintest limit
    const [t0, t1] = f.x.domain;
    expect(t0).toBeLessThan(60000);
    expect(t1).toBeGreaterThan(60012);
    for (const p of pts) {
      expect(f.x(p.mjd)).toBeGreaterThanOrEqual(40);
      expect(f.x(p.mjd)).toBeLessThanOrEqual(600);
      expect(f.y(p.mag)).toBeGreaterThanOrEqual(0);
      expect(f.y(p.mag)).toBeLessThanOrEqual(260);
    }
  });

  it("pads a single point", () => {
    const f = frame(parseLightCurve([{ mjd: 5, mag: 18, mag_err: 0 }]), 100, 100);
    expect(f.x.domain[1] - f.x.domain[0]).toBeCloseTo(1, 9);
    expect(f.y.domain[1] - f.y.domain[0]).toBeCloseTo(0.4, 9);
  });

  it("makes round ticks", () => {
    expect(ticks(0, 10, 5)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(ticks(17.63, 20.9, 5)).toEqual([18, 19, 20]);
    expect(ticks(0.1, 0.35, 5)).toEqual([0.1, 0.15, 0.2, 0.25, 0.3, 0.35]);
  });
});
