/**
 * Scanning-queue logic, free of React and the network so it is unit-tested: a cursor over the
 * loaded candidates, optimistic votes (applied at once, confirmed or rolled back when the API
 * answers), an undo stack and a bulk selection.
 */

export type Label = "real" | "bogus" | "skip";

/** One candidate as the scanning page draws it (normalised from the API's item). */
export interface ScanItem {
  id: number;
  score: number | null;
  snr: number | null;
  mag: number | null;
  mjd: number | null;
  ra: number;
  dec: number;
  createdAt: string | null;
  cutouts: { label: string; url: string }[];
  annotations: [string, string][];
  nearestStar: string | null;
  history: number[];
  objectId: number | null;
  objectSummary: string | null;
}

const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

function short(v: unknown): string {
  return typeof v === "number" ? String(Number(v.toPrecision(4))) : String(v);
}

/** Annotations as [name, value] rows: a list of {kind, name, separation_arcsec, mag} or a dict. */
function annotationPairs(raw: unknown): [string, string][] {
  if (!raw || typeof raw !== "object") return [];
  if (Array.isArray(raw)) {
    return raw.map((a, i): [string, string] => {
      if (typeof a !== "object" || a === null) return [String(i), String(a)];
      const o = a as Record<string, unknown>;
      const bits = [o.name, o.separation_arcsec != null ? `${short(o.separation_arcsec)}″` : null, o.mag != null ? `${short(o.mag)} mag` : null, o.source];
      return [String(o.kind ?? o.name ?? i), bits.filter((b) => b != null && b !== "").map(String).join(" · ")];
    });
  }
  return Object.entries(raw as Record<string, unknown>)
    .filter(([, v]) => v !== null && v !== undefined && typeof v !== "object")
    .map(([k, v]) => [k, short(v)]);
}

/** The nearest catalogue star as one line ("name · 1.2″ · 17.3 mag"). */
function starLine(star: unknown): string | null {
  if (star == null) return null;
  if (typeof star !== "object") return String(star);
  const o = star as Record<string, unknown>;
  const bits = [o.name, o.separation_arcsec != null ? `${short(o.separation_arcsec)}″` : null, o.mag != null ? `${short(o.mag)} mag` : null];
  return bits.filter((b) => b != null && b !== "").map(String).join(" · ") || null;
}

/** Triplet URLs (relative to the API prefix) from a queue item or a bare detection;
 * an empty url means the cutout is missing (a placeholder is drawn). */
export function cutoutUrls(raw: Record<string, unknown>, id: number): { label: string; url: string }[] {
  const given = raw.cutouts ?? raw.cutout_urls;
  if (given && typeof given === "object" && !Array.isArray(given)) {
    return Object.entries(given as Record<string, string | null>).map(([label, url]) => ({
      label,
      url: url ? url.replace(/^.*\/api\/v1/, "") : "",
    }));
  }
  const keys = Object.keys((raw.cutout_keys as Record<string, unknown>) ?? {});
  const triplets: [string, string[]][] = [
    ["science", ["science", "new"]],
    ["reference", ["reference", "template", "ref"]],
    ["difference", ["difference", "diff"]],
  ];
  return triplets.map(([label, names]) => {
    const kind = names.find((n) => keys.includes(n));
    return { label, url: kind ? `/detections/${id}/cutouts/${kind}` : "" };
  });
}

/** Accept the curation queue's item or a plain `DetectionOut`/`DetectionDetail`. */
export function normalizeItem(raw: Record<string, unknown>): ScanItem {
  const id = Number(raw.detection_id ?? raw.id);
  const obj = (raw.object as Record<string, unknown>) ?? null;
  const hist = (obj?.history ?? raw.history ?? raw.sparkline) as unknown;
  return {
    id,
    score: num(raw.score ?? raw.confidence),
    snr: num(raw.snr),
    mag: num(raw.mag),
    mjd: num(raw.mjd),
    ra: Number(raw.ra),
    dec: Number(raw.dec),
    createdAt: (raw.created_at as string) ?? null,
    cutouts: cutoutUrls(raw, id),
    annotations: annotationPairs(raw.annotations ?? raw.extra),
    nearestStar: starLine(raw.nearest_star),
    history: Array.isArray(hist) ? hist.map(Number).filter(Number.isFinite) : [],
    objectId: num(obj?.id ?? raw.object_id),
    objectSummary: obj ? `${short(obj.n_detections ?? "?")} detections, peak ${obj.peak_mag == null ? "—" : short(obj.peak_mag)} mag` : null,
  };
}

export type VoteState = "pending" | "stored" | "failed";

export interface Vote {
  id: number;
  label: Label;
  classification?: string;
  comment?: string;
  state: VoteState;
  error?: string;
}

/** Queue state: items loaded so far, the focused index, votes by detection, undo and selection. */
export interface QueueState {
  items: ScanItem[];
  index: number;
  votes: Record<number, Vote>;
  undo: number[];
  selected: number[];
  cursor: string | null;
  exhausted: boolean;
}

export function emptyQueue(): QueueState {
  return { items: [], index: 0, votes: {}, undo: [], selected: [], cursor: null, exhausted: false };
}

/** Add a fetched page, skipping ids already present (pages may overlap after a refresh). */
export function appendPage(q: QueueState, items: ScanItem[], cursor: string | null): QueueState {
  const seen = new Set(q.items.map((i) => i.id));
  const fresh = items.filter((i) => !seen.has(i.id));
  return { ...q, items: [...q.items, ...fresh], cursor, exhausted: cursor === null };
}

export function move(q: QueueState, step: number): QueueState {
  if (q.items.length === 0) return q;
  const index = Math.min(Math.max(q.index + step, 0), q.items.length - 1);
  return { ...q, index };
}

export function current(q: QueueState): ScanItem | null {
  return q.items[q.index] ?? null;
}

/** Items that should be fetched before the user reaches them. */
export function needsMore(q: QueueState, lookahead = 5): boolean {
  return !q.exhausted && q.items.length - q.index <= lookahead;
}

/** The next `n` items after the focused one (their images get prefetched). */
export function upcoming(q: QueueState, n = 2): ScanItem[] {
  return q.items.slice(q.index + 1, q.index + 1 + n);
}

/** Record a vote optimistically (state "pending") and move to the next candidate. */
export function castVote(
  q: QueueState,
  id: number,
  label: Label,
  extra: { classification?: string; comment?: string } = {},
): QueueState {
  const votes = { ...q.votes, [id]: { id, label, ...extra, state: "pending" as const } };
  const moved = q.items[q.index]?.id === id ? move(q, 1) : q;
  return { ...moved, votes, undo: [...q.undo, id] };
}

/** The API stored the vote. */
export function confirmVote(q: QueueState, id: number): QueueState {
  const v = q.votes[id];
  if (!v) return q;
  return { ...q, votes: { ...q.votes, [id]: { ...v, state: "stored" } } };
}

/** The API refused: keep the vote visible as failed and put the candidate back in focus. */
export function rollbackVote(q: QueueState, id: number, error: string): QueueState {
  const v = q.votes[id];
  if (!v) return q;
  const index = q.items.findIndex((i) => i.id === id);
  return {
    ...q,
    votes: { ...q.votes, [id]: { ...v, state: "failed", error } },
    undo: q.undo.filter((u) => u !== id),
    index: index >= 0 ? index : q.index,
  };
}

/** Undo the last vote: remove it locally and focus its candidate; returns the id undone. */
export function undoLast(q: QueueState): [QueueState, number | null] {
  const id = q.undo[q.undo.length - 1];
  if (id === undefined) return [q, null];
  const votes = { ...q.votes };
  delete votes[id];
  const index = q.items.findIndex((i) => i.id === id);
  return [{ ...q, votes, undo: q.undo.slice(0, -1), index: index >= 0 ? index : q.index }, id];
}

export function toggleSelect(q: QueueState, id: number): QueueState {
  const selected = q.selected.includes(id)
    ? q.selected.filter((s) => s !== id)
    : [...q.selected, id];
  return { ...q, selected };
}

/** Counts for the status line. */
export function tally(q: QueueState): Record<VoteState, number> {
  const out: Record<VoteState, number> = { pending: 0, stored: 0, failed: 0 };
  for (const v of Object.values(q.votes)) out[v.state] += 1;
  return out;
}
