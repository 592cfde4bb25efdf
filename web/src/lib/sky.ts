/**
 * Pure helpers of the sky pages: the HiPS location, its `properties` file, marker records from
 * the API's detections/objects/footprints, and the unit-sphere positions of the 3D sky.
 */
import { apiBase } from "@/lib/api";

/** Where `astrid serve` serves AstrID's own HiPS (built by `astrid sky build-hips`). */
export const HIPS_PATH = "/hips/astrid";

/** Absolute URL of AstrID's HiPS (Aladin Lite needs a full URL; same origin by default). */
export function hipsUrl(origin: string = typeof window !== "undefined" ? window.location.origin : ""): string {
  return `${apiBase() || origin}${HIPS_PATH}`;
}

/** Online surveys one may switch to (CDS HiPS ids); none is requested unless chosen. */
export const ONLINE_SURVEYS: ReadonlyArray<readonly [string, string]> = [
  ["CDS/P/DSS2/color", "DSS2 colour (online)"],
  ["CDS/P/PanSTARRS/DR1/color-z-zg-g", "Pan-STARRS DR1 colour (online)"],
  ["CDS/P/2MASS/color", "2MASS colour (online)"],
];

/** A HiPS `properties` file (`key = value` lines, `#` comments) as a record. */
export function parseProperties(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const t = line.trim();
    if (!t || t.startsWith("#")) continue;
    const eq = t.indexOf("=");
    if (eq < 0) continue;
    out[t.slice(0, eq).trim()] = t.slice(eq + 1).trim();
  }
  return out;
}

export interface SkyPoint {
  kind: "detection" | "object";
  id: number;
  ra: number;
  dec: number;
  label: string | null;
  mag: number | null;
}

export interface Footprint { id: number; status: string; filter: string | null; mjd: number | null; ra: number; dec: number; corners: number[][] }

interface HasPos { id: number; ra: number; dec: number; label?: string | null; mag?: number | null; peak_mag?: number | null }

/** Detections and objects with finite, in-range positions as sky points (others dropped). */
export function skyPoints(detections: HasPos[], objects: HasPos[]): SkyPoint[] {
  const ok = (p: HasPos) => Number.isFinite(p.ra) && Number.isFinite(p.dec) && p.dec >= -90 && p.dec <= 90;
  return [
    ...detections.filter(ok).map((d) => ({ kind: "detection" as const, id: d.id, ra: d.ra, dec: d.dec, label: d.label ?? null, mag: d.mag ?? null })),
    ...objects.filter(ok).map((o) => ({ kind: "object" as const, id: o.id, ra: o.ra, dec: o.dec, label: o.label ?? null, mag: o.peak_mag ?? null })),
  ];
}

/** The dashboard page of a point: objects open their object page, detections theirs. */
export function pointHref(p: Pick<SkyPoint, "kind" | "id">): string {
  return p.kind === "object" ? `/object?id=${p.id}` : `/detection?id=${p.id}`;
}

/** A footprint's corners as a closed polygon ([ra, dec] pairs, first repeated last). */
export function footprintPolygon(corners: number[][]): [number, number][] {
  const pts = corners.filter((c) => c.length >= 2 && Number.isFinite(c[0]) && Number.isFinite(c[1])).map((c) => [c[0], c[1]] as [number, number]);
  if (pts.length < 3) return [];
  return [...pts, pts[0]];
}

/**
 * Unit vector of (ra, dec) in degrees, in three.js axes (y up = north celestial pole):
 * x = cos δ cos α, y = sin δ, z = −cos δ sin α (RA grows eastward, seen from inside the sphere).
 */
export function radecToXyz(ra: number, dec: number, radius = 1): [number, number, number] {
  const a = (ra * Math.PI) / 180;
  const d = (dec * Math.PI) / 180;
  return [radius * Math.cos(d) * Math.cos(a), radius * Math.sin(d), -radius * Math.cos(d) * Math.sin(a)];
}

/** Inverse of {@link radecToXyz}: (ra in [0, 360), dec) in degrees of any non-zero vector. */
export function xyzToRadec(x: number, y: number, z: number): [number, number] {
  const r = Math.hypot(x, y, z);
  const dec = (Math.asin(y / r) * 180) / Math.PI;
  let ra = (Math.atan2(-z, x) * 180) / Math.PI;
  if (ra < 0) ra += 360;
  return [ra, dec];
}
