"use client";
import Link from "next/link";
import { useEffect, useState } from "react";
import { Cutout } from "@/components/Cutout";
import { Facts } from "@/components/Facts";
import { api } from "@/lib/api";
import { externalLinks } from "@/lib/links";
import { cutoutUrls } from "@/lib/queue";

type Obj = Record<string, unknown>;

export default function DetectionPage() {
  const [det, setDet] = useState<Obj | null>(null);
  const [votes, setVotes] = useState<Obj[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [comments, setComments] = useState<Obj[]>([]);
  useEffect(() => {
    const id = new URLSearchParams(window.location.search).get("id");
    if (!id || !/^\d+$/.test(id)) { setError("no detection id in the address (?id=)"); return; }
    api<Obj>(`/detections/${id}`).then(setDet).catch((e: Error) => setError(e.message));
    api<Obj[] | { items: Obj[] }>(`/detections/${id}/votes`).then((v) => setVotes(Array.isArray(v) ? v : v.items)).catch(() => setVotes([]));
    api<{ items: Obj[] }>(`/detections/${id}/comments`).then((c) => setComments(c.items ?? [])).catch(() => setComments([]));
  }, []);
  if (error) return <p role="alert" className="text-red-700 dark:text-red-400">{error}</p>;
  if (!det) return <p>Loading…</p>;
  const id = Number(det.id);
  const objectId = det.object_id ?? (det.extra as Obj | undefined)?.object_id;
  return (
    <div className="flex flex-col gap-4">
      <h1 className="text-xl font-semibold">Detection #{id}</h1>
      <div className="flex flex-wrap gap-3">{cutoutUrls(det, id).map((c) => <Cutout key={c.url} path={c.url} label={c.label} />)}</div>
      <Facts data={det} />
      {objectId != null && <Link className="underline" href={`/object?id=${String(objectId)}`}>Object {String(objectId)}</Link>}
      <nav aria-label="Elsewhere" className="flex flex-wrap gap-3 text-sm">
        {externalLinks(Number(det.ra), Number(det.dec)).map((l) => <a key={l.name} href={l.url} target="_blank" rel="noreferrer noopener" className="underline">{l.name}</a>)}
      </nav>
      <section><h2 className="font-semibold">Votes</h2>
        {votes.length === 0 ? <p className="text-sm">None yet.</p> : <ul className="text-sm">{votes.map((v, i) => <li key={i}>{String(v.username ?? v.user ?? v.user_id ?? "")}: {String(v.label)} {v.classification ? `· ${String(v.classification)}` : ""} {String(v.created_at ?? "")}</li>)}</ul>}
      </section>
      <section><h2 className="font-semibold">Comments</h2>
        {comments.length === 0 ? <p className="text-sm">None yet.</p> : (
          <ul className="text-sm" data-testid="comments">{comments.map((c, i) => (
            <li key={i} className="whitespace-pre-wrap"><span className="font-medium">{String(c.username ?? "")}</span>: {String(c.body ?? "")}</li>
          ))}</ul>
        )}
      </section>
    </div>
  );
}
