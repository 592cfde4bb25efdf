"use client";
import { useEffect, useState } from "react";
import { Bars } from "@/components/Bars";
import { LiveFeed } from "@/components/LiveFeed";
import { api } from "@/lib/api";

interface ObsMetrics { total: number; by_status: Record<string, number> }
interface DetStats { total: number; by_status: Record<string, number>; by_label: Record<string, number>; confidence_histogram: { edges: number[]; counts: number[] } }
interface Run { id: string; status?: string; state?: string; observation_ids?: number[]; created_at?: string }

const card = "rounded-lg border border-slate-200 bg-white p-3 dark:border-slate-800 dark:bg-slate-900";

export default function Overview() {
  const [obs, setObs] = useState<ObsMetrics | null>(null);
  const [det, setDet] = useState<DetStats | null>(null);
  const [runs, setRuns] = useState<Run[]>([]);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const load = () =>
      Promise.all([api<ObsMetrics>("/observations/metrics"), api<DetStats>("/detections/statistics"), api<Run[]>("/pipeline/runs").catch(() => [])])
        .then(([o, d, r]) => { setObs(o); setDet(d); setRuns(r); setError(null); })
        .catch((e: Error) => setError(e.message));
    void load();
    const t = setInterval(load, 15000);
    return () => clearInterval(t);
  }, []);
  const hist = det ? Object.fromEntries(det.confidence_histogram.counts.map((c, i) => [`${det.confidence_histogram.edges[i].toFixed(1)}–${det.confidence_histogram.edges[i + 1].toFixed(1)}`, c])) : {};
  return (
    <div className="flex flex-col gap-4">
      <h1 className="text-xl font-semibold">Overview</h1>
      {error && <div role="alert" className="rounded bg-amber-100 px-3 py-2 text-sm text-amber-900 dark:bg-amber-900 dark:text-amber-100">API: {error} (retrying)</div>}
      <div className="grid gap-4 md:grid-cols-3">
        <div className={card} data-testid="obs-metrics">{obs ? <Bars data={obs.by_status} caption={`Observations by status (${obs.total})`} /> : "…"}</div>
        <div className={card}>{det ? <Bars data={det.by_status} caption={`Detections by status (${det.total})`} /> : "…"}</div>
        <div className={card}>{det ? <Bars data={hist} caption="Model score P(real)" /> : "…"}</div>
      </div>
      <div className="grid gap-4 md:grid-cols-2">
        <LiveFeed />
        <section className={card} aria-labelledby="runs-title">
          <h2 id="runs-title" className="font-semibold">Pipeline batches</h2>
          {runs.length === 0 ? <p className="mt-2 text-sm">No batch started over HTTP yet.</p> : (
            <ul className="mt-2 text-sm">{runs.slice(0, 10).map((r) => <li key={r.id} className="font-mono">{r.id.slice(0, 8)} · {r.status ?? r.state} · {r.observation_ids?.length ?? 0} obs</li>)}</ul>
          )}
          {det && <div className="mt-3"><Bars data={det.by_label} caption="Curated labels" /></div>}
        </section>
      </div>
    </div>
  );
}
