"use client";
import { useEffect, useState } from "react";
import { Bars } from "@/components/Bars";
import { Columns, FractionLine } from "@/components/Charts";
import { LiveFeed } from "@/components/LiveFeed";
import { api, type Page } from "@/lib/api";
import { perDay, perNight } from "@/lib/charts";

interface ObsMetrics { total: number; by_status: Record<string, number> }
interface DetStats { total: number; by_status: Record<string, number>; by_label: Record<string, number>; confidence_histogram: { edges: number[]; counts: number[] } }
interface Perf { night: string; n: number; precision: number; recall: number }
interface Analytics { model_performance: Perf[] }
interface DetRow { mjd: number | null }
interface ObsRow { status: string; created_at: string; updated_at: string }
interface Run { id: string; status?: string; state?: string; observation_ids?: number[]; created_at?: string }

const card = "rounded-lg border border-slate-200 bg-white p-3 dark:border-slate-800 dark:bg-slate-900";

export default function Overview() {
  const [obs, setObs] = useState<ObsMetrics | null>(null);
  const [det, setDet] = useState<DetStats | null>(null);
  const [runs, setRuns] = useState<Run[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [trend, setTrend] = useState<{ nights: [string, number][]; perf: Perf[]; ingested: [string, number][]; completed: [string, number][] } | null>(null);
  useEffect(() => {
    const loadTrends = () =>
      Promise.all([
        api<Page<DetRow>>("/detections?order=desc&limit=1000"),
        api<Analytics>("/catalog/analytics"),
        api<Page<ObsRow>>("/observations?order=desc&limit=1000"),
      ]).then(([d, a, o]) => setTrend({
        nights: perNight(d.items.map((x) => x.mjd)),
        perf: a.model_performance.filter((p) => p.night !== "unknown" && p.n > 0),
        ingested: perDay(o.items.map((x) => x.created_at)),
        completed: perDay(o.items.filter((x) => x.status === "completed").map((x) => x.updated_at)),
      })).catch(() => undefined);
    void loadTrends();
    const t = setInterval(loadTrends, 60000);
    return () => clearInterval(t);
  }, []);
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
      <div className="grid gap-4 md:grid-cols-3">
        <div className={card}>{trend ? <Columns testid="chart-nights" data={trend.nights} caption="Detections per night (newest 1000)" /> : "…"}</div>
        <div className={card}>{trend ? <FractionLine testid="chart-precision" data={trend.perf.map((p) => ({ label: p.night, value: p.precision, n: p.n }))} caption="Model precision vs curated labels, per night" /> : "…"}</div>
        <div className={card}>
          {trend ? <>
            <Columns testid="chart-throughput" data={trend.completed} caption="Pipeline throughput: observations completed per day" />
            <p className="mt-1 text-xs">Ingested per day: {trend.ingested.map(([d, n]) => `${d} ${n}`).join(" · ") || "none"}</p>
          </> : "…"}
        </div>
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
