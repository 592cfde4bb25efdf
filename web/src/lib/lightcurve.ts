/**
 * Light-curve data and scaling: points normalised from the object API (detections, forced
 * photometry, upper limits), grouped per filter, and linear scales to SVG pixels with the
 * magnitude axis inverted (brighter is up), padded so error bars and arrows stay inside.
 */

export type PointKind = "detection" | "forced" | "limit";

export interface LcPoint {
  mjd: number;
  /** AB magnitude; for a limit, the limiting magnitude. */
  mag: number;
  err: number;
  band: string;
  kind: PointKind;
}

const f = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

/** One API row to a point; null when it has no time or no magnitude. */
export function toPoint(raw: Record<string, unknown>): LcPoint | null {
  const mjd = f(raw.mjd);
  const band = String(raw.band ?? raw.filter ?? raw.fid ?? "?");
  const limit = f(raw.limit ?? raw.upper_limit ?? raw.limiting_mag ?? raw.diffmaglim ?? raw.maglim);
  const mag = f(raw.mag ?? raw.magpsf ?? raw.mag_ab);
  const isLimit =
    raw.kind === "upper_limit" || raw.kind === "limit" || raw.is_upper_limit === true || (mag === null && limit !== null);
  if (mjd === null) return null;
  if (isLimit) {
    const m = limit ?? mag;
    return m === null ? null : { mjd, mag: m, err: 0, band, kind: "limit" };
  }
  if (mag === null) return null;
  const err = f(raw.mag_err ?? raw.magerr ?? raw.sigmapsf ?? raw.err) ?? 0;
  const kind: PointKind = raw.kind === "forced" || raw.forced === true ? "forced" : "detection";
  return { mjd, mag, err: Math.abs(err), band, kind };
}

/** Normalise a light curve given as rows, or as {detections, forced, upper_limits}. */
export function parseLightCurve(raw: unknown): LcPoint[] {
  let rows: Record<string, unknown>[] = [];
  if (Array.isArray(raw)) rows = raw as Record<string, unknown>[];
  else if (raw && typeof raw === "object") {
    const o = raw as Record<string, unknown>;
    if (Array.isArray(o.points)) rows = o.points as Record<string, unknown>[];
    for (const [key, kind] of [
      ["detections", "detection"],
      ["forced", "forced"],
      ["forced_photometry", "forced"],
      ["upper_limits", "limit"],
      ["non_detections", "limit"],
    ] as const) {
      const list = o[key];
      if (Array.isArray(list)) rows.push(...list.map((r) => ({ kind, ...(r as object) })));
    }
  }
  return rows
    .map(toPoint)
    .filter((p): p is LcPoint => p !== null)
    .sort((a, b) => a.mjd - b.mjd);
}

export function byBand(points: LcPoint[]): Map<string, LcPoint[]> {
  const out = new Map<string, LcPoint[]>();
  for (const p of points) out.set(p.band, [...(out.get(p.band) ?? []), p]);
  return out;
}

export interface Scale {
  (v: number): number;
  domain: [number, number];
}

/** Linear map of [d0, d1] onto [r0, r1]; a zero-width domain maps to the middle. */
export function linear(d0: number, d1: number, r0: number, r1: number): Scale {
  const span = d1 - d0;
  const fn = ((v: number) => (span === 0 ? (r0 + r1) / 2 : r0 + ((v - d0) / span) * (r1 - r0))) as Scale;
  fn.domain = [d0, d1];
  return fn;
}

export interface Frame {
  x: Scale;
  y: Scale;
  width: number;
  height: number;
}

/**
 * Scales for a plot of `width` × `height` px with `margin` px: time left to right, magnitudes
 * top (bright) to bottom (faint), domains padded by 5 % (at least 0.5 d and 0.2 mag) and wide
 * enough for every error bar and limit arrow (`arrowMag` mag below a limit).
 */
export function frame(points: LcPoint[], width: number, height: number, margin = 40, arrowMag = 0.3): Frame {
  if (points.length === 0) {
    return { x: linear(0, 1, margin, width - margin), y: linear(0, 1, margin, height - margin), width, height };
  }
  let t0 = Infinity;
  let t1 = -Infinity;
  let bright = Infinity;
  let faint = -Infinity;
  for (const p of points) {
    t0 = Math.min(t0, p.mjd);
    t1 = Math.max(t1, p.mjd);
    bright = Math.min(bright, p.mag - p.err);
    faint = Math.max(faint, p.mag + (p.kind === "limit" ? arrowMag : p.err));
  }
  const tp = Math.max((t1 - t0) * 0.05, 0.5);
  const mp = Math.max((faint - bright) * 0.05, 0.2);
  return {
    x: linear(t0 - tp, t1 + tp, margin, width - margin / 2),
    y: linear(bright - mp, faint + mp, margin / 2, height - margin),
    width,
    height,
  };
}

/** Round tick values covering [lo, hi] (about `n` of them). */
export function ticks(lo: number, hi: number, n = 5): number[] {
  const span = Math.abs(hi - lo);
  if (span === 0) return [lo];
  const raw = span / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const a = Math.min(lo, hi);
  const b = Math.max(lo, hi);
  const out: number[] = [];
  for (let v = Math.ceil(a / step) * step; v <= b + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** Colour per band (ZTF g/r/i and the common optical filters); others cycle a palette. */
export function bandColor(band: string, i: number): string {
  const known: Record<string, string> = {
    g: "#16a34a", "1": "#16a34a", r: "#dc2626", "2": "#dc2626", i: "#9333ea", "3": "#9333ea",
    u: "#2563eb", z: "#78716c", y: "#ca8a04", V: "#0d9488", B: "#1d4ed8",
  };
  return known[band] ?? ["#0891b2", "#db2777", "#65a30d", "#ea580c"][i % 4];
}
