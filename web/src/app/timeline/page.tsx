"use client";
import Link from "next/link";
import { useEffect, useState } from "react";
import { LiveFeed } from "@/components/LiveFeed";
import { api, type Page } from "@/lib/api";

interface Det { id: number; mjd: number | null; confidence: number | null; mag: number | null; created_at: string }

export default function TimelinePage() {
  const [dets, setDets] = useState<Det[]>([]);
  useEffect(() => {
    api<Page<Det>>("/detections?order=desc&limit=100").then((p) => setDets(p.items)).catch(() => setDets([]));
  }, []);
  const byNight = new Map<number, Det[]>();
  for (const d of dets) if (d.mjd !== null) byNight.set(Math.floor(d.mjd), [...(byNight.get(Math.floor(d.mjd)) ?? []), d]);
  const nights = [...byNight.entries()].sort((a, b) => b[0] - a[0]);
  return (
    <div className="flex flex-col gap-4">
      <h1 className="text-xl font-semibold">Timeline</h1>
      <LiveFeed types="detections" title="New detections and discoveries (live)" />
      <section aria-labelledby="nights" className="rounded-lg border border-slate-200 bg-white p-3 dark:border-slate-800 dark:bg-slate-900">
        <h2 id="nights" className="font-semibold">The newest 100 detections by night</h2>
        <ol className="mt-2 text-sm">
          {nights.map(([night, ds]) => (
            <li key={night} className="py-1"><span className="font-mono">MJD {night}</span>: {ds.length} —{" "}
              {ds.slice(0, 20).map((d) => <Link key={d.id} href={`/detection?id=${d.id}`} className="mr-1 underline">#{d.id}</Link>)}
            </li>
          ))}
        </ol>
      </section>
    </div>
  );
}
