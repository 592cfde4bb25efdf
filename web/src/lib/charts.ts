/**
 * Logic of the overview's charts: counts per night / day, and the scaling of a time series
 * into an SVG box (pure functions, tested with vitest).
 */

/** The night of an MJD as a UTC date (noon-to-noon, like the catalog analytics' `night_of`). */
export function nightOf(mjd: number): string {
  const ms = (mjd - 0.5 - 40587) * 86_400_000; // MJD 40587 = 1970-01-01T00:00Z
  return new Date(ms).toISOString().slice(0, 10);
}

/** Counts per key, keys sorted ascending; null/undefined keys are dropped. */
export function countBy<T>(items: T[], key: (t: T) => string | null | undefined): [string, number][] {
  const m = new Map<string, number>();
  for (const it of items) {
    const k = key(it);
    if (k == null) continue;
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return [...m.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

/** Detections per night from their MJDs (those without an MJD are not counted). */
export function perNight(mjds: (number | null)[]): [string, number][] {
  return countBy(mjds, (m) => (m == null || !Number.isFinite(m) ? null : nightOf(m)));
}

/** Items per UTC day of an ISO timestamp (e.g. observations completed per day). */
export function perDay(times: (string | null | undefined)[]): [string, number][] {
  return countBy(times, (t) => (t ? t.slice(0, 10) : null));
}

export interface Box { width: number; height: number; pad: number }

/**
 * SVG coordinates of a series: x evenly spaced by index across the box, y linear in value
 * over [lo, hi] with `hi` at the top. A degenerate range (lo == hi) puts points mid-height.
 */
export function seriesPoints(values: number[], box: Box, lo = Math.min(...values), hi = Math.max(...values)): [number, number][] {
  const n = values.length;
  const w = box.width - 2 * box.pad;
  const h = box.height - 2 * box.pad;
  return values.map((v, i) => {
    const x = box.pad + (n === 1 ? w / 2 : (i / (n - 1)) * w);
    const y = hi === lo ? box.pad + h / 2 : box.pad + (1 - (v - lo) / (hi - lo)) * h;
    return [x, y];
  });
}

/** Heights of columns for counts (the largest fills `height`; zero stays zero). */
export function columnHeights(counts: number[], height: number): number[] {
  const top = Math.max(0, ...counts);
  return counts.map((c) => (top === 0 ? 0 : (Math.max(0, c) / top) * height));
}
