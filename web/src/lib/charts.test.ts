import { describe, expect, it } from "vitest";
import { columnHeights, countBy, nightOf, perDay, perNight, seriesPoints } from "./charts";

describe("nights and days", () => {
  it("puts an MJD in its noon-to-noon UTC night", () => {
    // MJD 60000.0 = 2023-02-25T00:00Z, still the night that began on 2023-02-24.
    expect(nightOf(60000.0)).toBe("2023-02-24");
    expect(nightOf(60000.49)).toBe("2023-02-24");
    expect(nightOf(60000.51)).toBe("2023-02-25");
    expect(nightOf(40587.5)).toBe("1970-01-01");
  });
  it("counts per night, sorted, without missing MJDs", () => {
    expect(perNight([60000.2, null, 60007.1, 60000.3, Number.NaN])).toEqual([["2023-02-24", 2], ["2023-03-03", 1]]);
  });
  it("counts per UTC day of a timestamp", () => {
    expect(perDay(["2026-11-30T17:00:00Z", "2026-11-29T01:00:00", null, "2026-11-30T01:00:00"])).toEqual([["2026-11-29", 1], ["2026-11-30", 2]]);
    expect(countBy([1, 2, 3], () => null)).toEqual([]);
  });
});

describe("scaling", () => {
  const box = { width: 100, height: 50, pad: 5 };
  it("spans the box, the largest value on top", () => {
    const pts = seriesPoints([0, 0.5, 1], box, 0, 1);
    expect(pts[0]).toEqual([5, 45]);
    expect(pts[1][0]).toBeCloseTo(50, 9);
    expect(pts[1][1]).toBeCloseTo(25, 9);
    expect(pts[2]).toEqual([95, 5]);
  });
  it("handles one point and a flat series", () => {
    expect(seriesPoints([0.3], box, 0, 1)[0][0]).toBe(50);
    expect(seriesPoints([2, 2], box).map((p) => p[1])).toEqual([25, 25]);
  });
  it("scales columns to the largest count", () => {
    expect(columnHeights([0, 5, 10], 90)).toEqual([0, 45, 90]);
    expect(columnHeights([0, 0], 90)).toEqual([0, 0]);
  });
});
