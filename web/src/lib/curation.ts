/**
 * Calls of the curation API (issue 11 contracts) used by the scanning page, and the vote
 * outbox: a vote that could not be delivered (API down, session expired) is kept in
 * localStorage and sent again, so nothing is silently dropped.
 */
import { api, ApiError, type Page } from "./api";
import { normalizeItem, type Label, type ScanItem } from "./queue";

export interface QueueFilters {
  order: "score" | "uncertainty" | "age";
  minScore: string;
  minSnr: string;
  maxAgeDays: string;
}

export const DEFAULT_FILTERS: QueueFilters = { order: "score", minScore: "", minSnr: "", maxAgeDays: "" };

/** Shortcut keys 1–9: a label and a taxonomy path each. */
export const CLASSIFICATIONS: { key: string; label: Label; path: string; name: string }[] = [
  { key: "1", label: "real", path: "transient/supernova", name: "Supernova" },
  { key: "2", label: "real", path: "transient/supernova/Ia", name: "SN Ia" },
  { key: "3", label: "real", path: "variable star", name: "Variable star" },
  { key: "4", label: "real", path: "AGN", name: "AGN" },
  { key: "5", label: "real", path: "solar-system object", name: "Solar-system object" },
  { key: "6", label: "bogus", path: "artefact/cosmic ray", name: "Cosmic ray" },
  { key: "7", label: "bogus", path: "artefact/subtraction residual", name: "Subtraction residual" },
  { key: "8", label: "bogus", path: "artefact/saturated star", name: "Saturated star" },
  { key: "9", label: "bogus", path: "artefact/dipole", name: "Dipole" },
];

export interface QueuePage {
  items: ScanItem[];
  next: string | null;
  /** False when the server has no scanning queue yet (detections are listed instead). */
  curated: boolean;
}

function queryOf(f: QueueFilters, cursor: string | null, limit: number): URLSearchParams {
  const q = new URLSearchParams({ order: f.order, limit: String(limit) });
  if (f.minScore) q.set("min_score", f.minScore);
  if (f.minSnr) q.set("min_snr", f.minSnr);
  if (f.maxAgeDays) q.set("max_age_days", f.maxAgeDays);
  if (cursor) q.set("cursor", cursor);
  return q;
}

/** One page of the scanning queue; falls back to the detection list on an older server. */
export async function fetchQueue(f: QueueFilters, cursor: string | null, limit = 25): Promise<QueuePage> {
  try {
    const page = await api<Page<Record<string, unknown>>>(`/scanning/queue?${queryOf(f, cursor, limit)}`);
    return { items: page.items.map(normalizeItem), next: page.next_cursor, curated: true };
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 404) throw err;
  }
  const q = new URLSearchParams({ limit: String(limit), order: "desc" });
  if (f.minScore) q.set("min_confidence", f.minScore);
  if (f.minSnr) q.set("min_snr", f.minSnr);
  if (cursor) q.set("cursor", cursor);
  const page = await api<Page<Record<string, unknown>>>(`/detections?${q}`);
  return { items: page.items.map(normalizeItem), next: page.next_cursor, curated: false };
}

export interface VoteBody {
  label: Label;
  classification?: string;
  comment?: string;
}

export function postVote(id: number, body: VoteBody): Promise<unknown> {
  return api(`/detections/${id}/votes`, { method: "POST", json: body });
}

export function undoVote(id: number): Promise<unknown> {
  return api(`/detections/${id}/votes/mine`, { method: "DELETE" });
}

/** Undo the caller's latest vote of this login session (the server keeps the session). */
export function undoLastVote(): Promise<{ detection_id: number }> {
  return api<{ detection_id: number }>(`/votes/mine/last`, { method: "DELETE" });
}

export function escalate(id: number): Promise<unknown> {
  return api(`/detections/${id}/escalate`, { method: "POST", json: {} });
}

export function postComment(id: number, text: string): Promise<unknown> {
  return api(`/detections/${id}/comments`, { method: "POST", json: { body: text } });
}

// --- outbox ---------------------------------------------------------------------------------

const OUTBOX = "astrid.outbox";

export interface Outgoing extends VoteBody {
  id: number;
}

export function readOutbox(): Outgoing[] {
  try {
    return JSON.parse(localStorage.getItem(OUTBOX) ?? "[]") as Outgoing[];
  } catch {
    return [];
  }
}

export function writeOutbox(items: Outgoing[]): void {
  if (items.length) localStorage.setItem(OUTBOX, JSON.stringify(items));
  else localStorage.removeItem(OUTBOX);
}

/** A failure worth retrying later (network down, server busy, session to renew). */
export function isTransient(err: unknown): boolean {
  if (!(err instanceof ApiError)) return true; // fetch() threw: the API is unreachable
  return err.status === 401 || err.status === 429 || err.status >= 500;
}
