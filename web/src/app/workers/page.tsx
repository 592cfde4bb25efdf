"use client";
import Link from "next/link";
import { useCallback, useEffect, useState } from "react";
import { Degraded } from "@/components/Degraded";
import { TrendBars } from "@/components/TrendBars";
import { api, apiBase, atLeast } from "@/lib/api";
import { WINDOWS, ageLabel, degradedReasons, latestByCheck, loadResults, rebucket, type Bucket, type StoredResult } from "@/lib/ops";
import { useSession } from "@/lib/useSession";

interface Worker {
  id: string; host: string; pid: number; queues: string[]; threads: number; state: string;
  heartbeat_age_s: number; started_at: string; current_task: string | null; processed: number; failed: number; paused: boolean;
}
interface Queue {
  name: string; paused: boolean; changed_by: string | null; waiting: number | null; delayed: number | null;
  in_flight: number | null; dead: number | null; workers: number; error: string | null;
}
interface Parked { id: number; stage: string; observation_id: number | null; attempts: number; error: string | null; error_kind: string | null; worker: string | null; finished_at: string | null }
interface Queues {
  broker: string; queues: Queue[]; windows: Record<string, { processed: number; failed: number }>;
  bucket_s: number; buckets: Bucket[]; parked_total: number; parked: Parked[];
}

const INTERVALS = [["2", "2 s"], ["5", "5 s"], ["15", "15 s"], ["60", "1 min"], ["0", "paused"]] as const;
const POLL_KEY = "astrid.workers.poll";
const btn = "rounded border border-slate-500 px-2 py-0.5 text-sm hover:bg-slate-200 disabled:opacity-60 dark:hover:bg-slate-800";
const cell = "px-2 py-1 text-left";

export default function WorkersPage() {
  const session = useSession();
  const admin = atLeast(session?.role, "admin");
  const [workers, setWorkers] = useState<Worker[]>([]);
  const [queues, setQueues] = useState<Queues | null>(null);
  const [ready, setReady] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [poll, setPoll] = useState("5");
  const [loadedAt, setLoadedAt] = useState(0);
  const [purging, setPurging] = useState<string | null>(null);
  const [confirm, setConfirm] = useState("");
  const [selected, setSelected] = useState<Set<number>>(new Set());

  useEffect(() => setPoll(localStorage.getItem(POLL_KEY) ?? "5"), []);
  const refresh = useCallback(async () => {
    try {
      const [w, q] = await Promise.all([api<Worker[]>("/workers"), api<Queues>("/queues")]);
      setWorkers(w);
      setQueues(q);
      setLoadedAt(Date.now());
      setError(null);
    } catch (err) {
      setError(`cannot load workers and queues: ${err instanceof Error ? err.message : String(err)}`);
    }
    try {
      const r = await fetch(`${apiBase()}/health/ready`);
      setReady(((await r.json()) as { status: string }).status);
    } catch {
      setReady("unreachable");
    }
  }, []);
  useEffect(() => {
    void refresh();
    const s = Number(poll);
    if (!s) return;
    const t = setInterval(() => void refresh(), s * 1000);
    return () => clearInterval(t);
  }, [poll, refresh]);

  const act = async (what: string, fn: () => Promise<unknown>) => {
    setNotice(null);
    try {
      await fn();
      setNotice(what);
      await refresh();
    } catch (err) {
      setError(`${what} refused: ${err instanceof Error ? err.message : String(err)}`);
    }
  };
  // Failed checks of the last diagnostics run in this browser count too.
  const stored = loadedAt ? latestByCheck(loadResults(localStorage), ["database", "storage", "broker", "mlflow", "model", "smoke"]) : {};
  const reasons = degradedReasons(workers, Object.values(stored).filter((r): r is StoredResult => r !== undefined), ready);
  if (error) reasons.push(error);

  return (
    <div className="flex flex-col gap-4">
      <div className="flex flex-wrap items-end justify-between gap-2">
        <h1 className="text-xl font-semibold">Workers and queues</h1>
        <label className="flex items-center gap-2 text-sm">Refresh every
          <select value={poll} onChange={(e) => { setPoll(e.target.value); localStorage.setItem(POLL_KEY, e.target.value); }}
            className="rounded border border-slate-500 bg-white px-1 py-0.5 dark:bg-slate-900" data-testid="poll">
            {INTERVALS.map(([v, l]) => <option key={v} value={v}>{l}</option>)}
          </select>
        </label>
      </div>
      <Degraded reasons={reasons} />
      {notice && <p role="status" data-testid="ops-notice" className="text-sm">{notice}</p>}

      <section aria-labelledby="workers-h">
        <h2 id="workers-h" className="mb-1 font-semibold">Workers</h2>
        {workers.length === 0 ? (
          <p className="text-sm" data-testid="no-workers">No worker has reported in the last 24 h{queues?.broker === "inprocess" ? " (no broker configured: tasks run in process)" : ""}.</p>
        ) : (
          <div className="overflow-x-auto">
            <table className="min-w-full text-sm" data-testid="workers-table">
              <thead><tr>{["Worker", "State", "Heartbeat", "Queues", "Running now", "Processed", "Failed"].map((h) => <th key={h} scope="col" className={cell}>{h}</th>)}</tr></thead>
              <tbody>{workers.map((w) => (
                <tr key={w.id} data-worker-pid={w.pid} data-state={w.state} className="border-t border-slate-200 dark:border-slate-800">
                  <td className={`${cell} font-mono`}>{w.host}:{w.pid}</td>
                  <td className={cell}><span className={w.state === "lost" ? "font-semibold text-red-700 dark:text-red-400" : ""}>{w.state}{w.paused ? " (paused)" : ""}</span></td>
                  <td className={cell} data-testid="heartbeat">{ageLabel(w.heartbeat_age_s)}</td>
                  <td className={cell}>{w.queues.join(", ")} · {w.threads} thread(s)</td>
                  <td className={cell}>{w.current_task ?? "idle"}</td>
                  <td className={`${cell} font-mono`}>{w.processed}</td>
                  <td className={`${cell} font-mono`}>{w.failed}</td>
                </tr>
              ))}</tbody>
            </table>
          </div>
        )}
      </section>

      <section aria-labelledby="queues-h">
        <h2 id="queues-h" className="mb-1 font-semibold">Queues <span className="text-sm font-normal">({queues?.broker ?? "…"} broker)</span></h2>
        <div className="overflow-x-auto">
          <table className="min-w-full text-sm" data-testid="queues-table">
            <thead><tr>{["Queue", "State", "Waiting", "Delayed", "In flight", "Dead", "Workers", ...(admin ? ["Actions"] : [])].map((h) => <th key={h} scope="col" className={cell}>{h}</th>)}</tr></thead>
            <tbody>{(queues?.queues ?? []).map((q) => (
              <tr key={q.name} className="border-t border-slate-200 dark:border-slate-800">
                <td className={`${cell} font-mono`}>{q.name}</td>
                <td className={cell} data-testid={`queue-state-${q.name}`}>{q.paused ? `paused${q.changed_by ? ` by ${q.changed_by}` : ""}` : "running"}</td>
                {(["waiting", "delayed", "in_flight", "dead"] as const).map((k) => <td key={k} className={`${cell} font-mono`}>{q.error ? "?" : q[k] ?? "—"}</td>)}
                <td className={`${cell} font-mono`}>{q.workers}</td>
                {admin && (
                  <td className={`${cell} flex flex-wrap gap-1`}>
                    {q.paused
                      ? <button type="button" className={btn} onClick={() => void act(`queue ${q.name} resumed`, () => api(`/queues/${q.name}/resume`, { method: "POST" }))}>Resume {q.name}</button>
                      : <button type="button" className={btn} onClick={() => void act(`queue ${q.name} paused`, () => api(`/queues/${q.name}/pause`, { method: "POST" }))}>Pause {q.name}</button>}
                    <button type="button" className={btn} onClick={() => { setPurging(q.name); setConfirm(""); }}>Purge {q.name}…</button>
                  </td>
                )}
              </tr>
            ))}</tbody>
          </table>
        </div>
        {queues?.queues.some((q) => q.error) && <p className="text-sm text-red-700 dark:text-red-400">{queues.queues.find((q) => q.error)?.error}</p>}
        {admin && purging && (
          <form className="mt-2 flex flex-wrap items-end gap-2 rounded border border-red-700 p-2 text-sm" aria-label={`Purge queue ${purging}`}
            onSubmit={(e) => { e.preventDefault(); const name = purging; setPurging(null); void act(`queue ${name} purged`, () => api(`/queues/${name}/purge`, { method: "POST", json: { confirm } })); }}>
            <p className="w-full">Purging drops every waiting, delayed and dead message of <b>{purging}</b>. Type its name to confirm.</p>
            <label className="flex flex-col">Queue name
              <input value={confirm} onChange={(e) => setConfirm(e.target.value)} className="rounded border border-slate-500 bg-white px-1 dark:bg-slate-900" />
            </label>
            <button type="submit" disabled={confirm !== purging} className="rounded bg-red-700 px-2 py-1 text-white disabled:opacity-60">Purge</button>
            <button type="button" className={btn} onClick={() => setPurging(null)}>Cancel</button>
          </form>
        )}
      </section>

      <section aria-labelledby="trend-h">
        <h2 id="trend-h" className="mb-1 font-semibold">Stage runs finished</h2>
        <div className="flex flex-wrap gap-6" data-testid="trends">
          {Object.entries(WINDOWS).map(([key, w]) => {
            const counts = queues?.windows[key] ?? { processed: 0, failed: 0 };
            return (
              <figure key={key} className="text-sm" data-window={key}>
                <TrendBars bins={rebucket(queues?.buckets ?? [], w.seconds, w.bins, loadedAt || Date.now())} label={`last ${key}`} />
                <figcaption>last {key}: <b>{counts.processed}</b> processed · <b>{counts.failed}</b> failed</figcaption>
              </figure>
            );
          })}
        </div>
      </section>

      <section aria-labelledby="parked-h">
        <h2 id="parked-h" className="mb-1 font-semibold">Parked runs ({queues?.parked_total ?? 0})</h2>
        {admin && (queues?.parked.length ?? 0) > 0 && (
          <div className="mb-1 flex gap-2">
            <button type="button" className={btn} disabled={selected.size === 0}
              onClick={() => void act(`retrying ${selected.size} parked run(s)`, async () => { await api("/failures/retry", { method: "POST", json: { ids: [...selected] } }); setSelected(new Set()); })}>
              Retry selected
            </button>
            <button type="button" className={btn} onClick={() => void act("retrying every parked run", () => api("/failures/retry", { method: "POST", json: { all: true } }))}>Retry all</button>
          </div>
        )}
        {(queues?.parked.length ?? 0) === 0 ? <p className="text-sm">No parked runs.</p> : (
          <div className="overflow-x-auto">
            <table className="min-w-full text-sm" data-testid="parked-table">
              <thead><tr>{[...(admin ? ["Select"] : []), "Run", "Stage", "Observation", "Attempts", "Reason", "Finished"].map((h) => <th key={h} scope="col" className={cell}>{h}</th>)}</tr></thead>
              <tbody>{queues?.parked.map((p) => (
                <tr key={p.id} className="border-t border-slate-200 align-top dark:border-slate-800">
                  {admin && <td className={cell}><input type="checkbox" aria-label={`select run ${p.id}`} checked={selected.has(p.id)}
                    onChange={(e) => { const s = new Set(selected); if (e.target.checked) s.add(p.id); else s.delete(p.id); setSelected(s); }} /></td>}
                  <td className={`${cell} font-mono`}>{p.id}</td>
                  <td className={cell}>{p.stage}</td>
                  <td className={cell}>{p.observation_id ?? "—"}</td>
                  <td className={`${cell} font-mono`}>{p.attempts}</td>
                  <td className={`${cell} max-w-xl break-words`}>{p.error_kind ? `${p.error_kind}: ` : ""}{p.error}</td>
                  <td className={cell}>{p.finished_at ? new Date(p.finished_at).toLocaleString() : "—"}</td>
                </tr>
              ))}</tbody>
            </table>
          </div>
        )}
      </section>
      <p className="text-sm"><Link className="underline" href="/diagnostics">Diagnostics</Link>: run the health checks and a detection smoke test.</p>
    </div>
  );
}
