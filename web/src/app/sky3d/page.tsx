"use client";
import Link from "next/link";
import { useEffect, useMemo, useState } from "react";
import { Sky3D } from "@/components/Sky3D";
import { api, type Page } from "@/lib/api";
import { pointHref, skyPoints } from "@/lib/sky";

interface Det { id: number; ra: number; dec: number; label: string | null; mag: number | null }
interface Obj { id: number; ra: number; dec: number; label: string | null; peak_mag: number | null; n_detections: number }

export default function Sky3DPage() {
  const [data, setData] = useState<{ dets: Det[]; objs: Obj[] } | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    Promise.all([api<Page<Det>>("/detections?order=desc&limit=1000"), api<Page<Obj>>("/objects?limit=1000")])
      .then(([d, o]) => setData({ dets: d.items, objs: o.items }))
      .catch((e: Error) => setError(e.message));
  }, []);
  const points = useMemo(() => (data ? skyPoints(data.dets, data.objs) : []), [data]);
  return (
    <div className="flex flex-col gap-3">
      <h1 className="text-xl font-semibold">3D sky</h1>
      {error && <div role="alert" className="rounded bg-amber-100 px-3 py-2 text-sm text-amber-900 dark:bg-amber-900 dark:text-amber-100">API: {error}</div>}
      <p className="text-sm">The celestial sphere seen from inside: amber points are detections, cyan points objects ({data ? `${data.dets.length} detections, ${data.objs.length} objects` : "…"}).</p>
      {data ? <Sky3D points={points} /> : <p>Loading…</p>}
      {data && (
        <section aria-labelledby="list3d" className="rounded-lg border border-slate-200 bg-white p-3 text-sm dark:border-slate-800 dark:bg-slate-900">
          <h2 id="list3d" className="font-semibold">Objects</h2>
          <ul className="mt-1 grid gap-x-4 sm:grid-cols-2 lg:grid-cols-3">
            {data.objs.slice(0, 30).map((o) => <li key={o.id}><Link className="underline" href={pointHref({ kind: "object", id: o.id })}>object {o.id}</Link> · {o.n_detections} det.</li>)}
          </ul>
        </section>
      )}
    </div>
  );
}
