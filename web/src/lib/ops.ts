/**
 * Logic of the operations pages (/workers, /diagnostics): re-bucketing the API's 5-minute
 * throughput buckets into trend bins per window, the degraded banner's reasons, and the
 * diagnostics results kept in localStorage (and exported as JSON).
 */

/** One bucket of `GET /queues` (`start` ISO time, counts of finished stage runs). */
export interface Bucket { start: string; processed: number; failed: number }
export interface Bin { start: number; processed: number; failed: number }

/** Trend windows: seconds covered and number of bins drawn. */
export const WINDOWS: Record<string, { seconds: number; bins: number }> = {
  "1h": { seconds: 3600, bins: 12 },
  "6h": { seconds: 6 * 3600, bins: 12 },
  "24h": { seconds: 24 * 3600, bins: 24 },
};

/**
 * Spread `buckets` over `bins` equal bins ending at `nowMs` and covering `seconds`;
 * buckets outside the window are dropped. Bins are oldest first; `start` is epoch ms.
 */
export function rebucket(buckets: Bucket[], seconds: number, bins: number, nowMs: number): Bin[] {
  const width = (seconds * 1000) / bins;
  const from = nowMs - seconds * 1000;
  const out: Bin[] = Array.from({ length: bins }, (_, i) => ({ start: from + i * width, processed: 0, failed: 0 }));
  for (const b of buckets) {
    const t = Date.parse(b.start);
    if (!Number.isFinite(t) || t < from || t > nowMs) continue;
    const i = Math.min(bins - 1, Math.floor((t - from) / width));
    out[i].processed += b.processed;
    out[i].failed += b.failed;
  }
  return out;
}

/** "4 s ago", "3 min ago", "2 h ago" for a heartbeat age in seconds. */
export function ageLabel(seconds: number): string {
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

export interface WorkerLike { id: string; host: string; pid: number; state: string }
export interface CheckLike { name: string; ok: boolean; status: string }

/** Why the system is degraded (lost workers, failed checks, an unready service); empty if not. */
export function degradedReasons(workers: WorkerLike[], checks: CheckLike[], ready: string | null = null): string[] {
  const out = workers.filter((w) => w.state === "lost").map((w) => `worker ${w.host}:${w.pid} is lost (no heartbeat)`);
  for (const c of checks) if (!c.ok) out.push(`check ${c.name} failed: ${c.status}`);
  if (ready !== null && ready !== "ok") out.push(`/health/ready says ${ready}`);
  return out;
}

/** Minimal Storage (window.localStorage or a test double). */
export interface KV { getItem(k: string): string | null; setItem(k: string, v: string): void; removeItem(k: string): void }

export const RESULTS_KEY = "astrid.diagnostics";
/** Results kept per check; older runs are dropped. */
export const KEEP_RUNS = 20;

export interface StoredResult {
  name: string;
  ok: boolean;
  status: string;
  ms: number;
  details: Record<string, unknown> | null;
  at: string;
  log: { time: string; check: string; level: string; message: string }[];
}

/** The stored results, newest first (an unreadable store reads as empty). */
export function loadResults(store: KV): StoredResult[] {
  try {
    const raw = store.getItem(RESULTS_KEY);
    const parsed: unknown = raw ? JSON.parse(raw) : [];
    return Array.isArray(parsed) ? (parsed as StoredResult[]) : [];
  } catch {
    return [];
  }
}

/** Prepend `results`, keep the newest KEEP_RUNS per check, store; the new list. */
export function saveResults(store: KV, results: StoredResult[]): StoredResult[] {
  const all = [...results, ...loadResults(store)];
  const seen: Record<string, number> = {};
  const kept = all.filter((r) => (seen[r.name] = (seen[r.name] ?? 0) + 1) <= KEEP_RUNS);
  store.setItem(RESULTS_KEY, JSON.stringify(kept));
  return kept;
}

/** The latest result of each check, in the order of `names`. */
export function latestByCheck(results: StoredResult[], names: string[]): Record<string, StoredResult | undefined> {
  const out: Record<string, StoredResult | undefined> = {};
  for (const n of names) out[n] = results.find((r) => r.name === n);
  return out;
}

/** The JSON document "Export JSON" downloads. */
export function exportDocument(results: StoredResult[], nowIso: string): string {
  return JSON.stringify({ exported_at: nowIso, source: "astrid diagnostics", results }, null, 2);
}
