"use client";
import Link from "next/link";
import { useEffect, useState } from "react";
import { subscribe, type LinkState, type SseEvent } from "@/lib/sse";

interface FeedEvent {
  id: number | null;
  type: string;
  aggregate: string;
  aggregateId: number | null;
  at: string;
  summary: string;
}

function toFeed(e: SseEvent): FeedEvent {
  const d = (e.data ?? {}) as Record<string, unknown>;
  const payload = (d.payload ?? {}) as Record<string, unknown>;
  const summary = Object.entries(payload)
    .filter(([, v]) => v !== null && typeof v !== "object")
    .slice(0, 3)
    .map(([k, v]) => `${k}=${typeof v === "number" ? Number(v.toPrecision(3)) : String(v)}`)
    .join(" ");
  return {
    id: e.id,
    type: String(d.type ?? e.event),
    aggregate: String(d.aggregate_type ?? ""),
    aggregateId: typeof d.aggregate_id === "number" ? d.aggregate_id : null,
    at: String(d.created_at ?? new Date().toISOString()),
    summary,
  };
}

function target(e: FeedEvent): string | null {
  if (e.aggregateId === null) return null;
  if (e.aggregate === "object") return `/object?id=${e.aggregateId}`;
  if (e.aggregate === "detection") return `/detection?id=${e.aggregateId}`;
  return null;
}

/** The newest domain events from the SSE stream, newest first (text only: never HTML). */
export function LiveFeed({ types, max = 50, title = "Live feed" }: { types?: string; max?: number; title?: string }) {
  const [events, setEvents] = useState<FeedEvent[]>([]);
  const [state, setState] = useState<LinkState>("connecting");
  useEffect(() => {
    const abort = new AbortController();
    void subscribe((e) => setEvents((old) => [toFeed(e), ...old].slice(0, max)), setState, abort.signal, types);
    return () => abort.abort();
  }, [types, max]);
  return (
    <section aria-labelledby="feed-title" className="rounded-lg border border-slate-200 bg-white p-3 dark:border-slate-800 dark:bg-slate-900">
      <div className="flex items-center gap-2">
        <h2 id="feed-title" className="font-semibold">{title}</h2>
        <span data-testid="feed-state" className={`rounded px-1.5 text-xs ${state === "live" ? "bg-emerald-100 text-emerald-900 dark:bg-emerald-900 dark:text-emerald-100" : "bg-amber-100 text-amber-900 dark:bg-amber-900 dark:text-amber-100"}`}>
          {state === "live" ? "live" : state === "down" ? "disconnected, retrying" : "connecting"}
        </span>
      </div>
      {events.length === 0 ? (
        <p className="mt-2 text-sm text-slate-700 dark:text-slate-300">Waiting for events…</p>
      ) : (
        <ol className="mt-2 max-h-96 overflow-auto text-sm" data-testid="feed" aria-live="polite">
          {events.map((e, i) => {
            const href = target(e);
            return (
              <li key={`${e.id}-${i}`} className="flex flex-wrap gap-x-2 border-b border-slate-100 py-1 dark:border-slate-800" data-event-type={e.type}>
                <time className="font-mono text-xs text-slate-700 dark:text-slate-300">{e.at.slice(11, 19)}</time>
                <span className="font-medium">{e.type}</span>
                {href ? <Link className="underline" href={href}>{e.aggregate} {e.aggregateId}</Link> : <span>{e.aggregate} {e.aggregateId ?? ""}</span>}
                <span className="text-slate-700 dark:text-slate-300">{e.summary}</span>
              </li>
            );
          })}
        </ol>
      )}
    </section>
  );
}
