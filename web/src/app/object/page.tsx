"use client";
import Link from "next/link";
import { useCallback, useEffect, useState } from "react";
import { Cutout } from "@/components/Cutout";
import { Facts } from "@/components/Facts";
import { LightCurve } from "@/components/LightCurve";
import { ExpertActions } from "@/components/ExpertActions";
import { api, atLeast } from "@/lib/api";
import { parseLightCurve } from "@/lib/lightcurve";
import { externalLinks } from "@/lib/links";
import { cutoutUrls } from "@/lib/queue";
import { useSession } from "@/lib/useSession";

type Obj = Record<string, unknown>;
const card = "rounded-lg border border-slate-200 bg-white p-3 dark:border-slate-800 dark:bg-slate-900";

function list(v: unknown): Obj[] {
  return Array.isArray(v) ? (v as Obj[]) : [];
}

export default function ObjectPage() {
  const [obj, setObj] = useState<Obj | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [notes, setNotes] = useState<Obj[]>([]);
  const session = useSession();
  const load = useCallback(() => {
    const id = new URLSearchParams(window.location.search).get("id");
    if (!id || !/^\d+$/.test(id)) { setError("no object id in the address (?id=)"); return; }
    api<Obj>(`/objects/${id}`).then(setObj).catch((e: Error) => setError(e.message));
    api<{ items: Obj[] }>(`/objects/${id}/comments`).then((c) => setNotes(c.items ?? [])).catch(() => setNotes([]));
  }, []);
  useEffect(load, [load]);
  if (error) return <p role="alert" className="text-red-700 dark:text-red-400">{error}</p>;
  if (!obj) return <p>Loading…</p>;
  const ra = Number(obj.ra);
  const dec = Number(obj.dec);
  const points = parseLightCurve(obj.light_curve ?? obj.lightcurve ?? obj.photometry);
  const members = list(obj.detections ?? obj.members);
  const comments = [...list(obj.comments), ...notes];
  const votes = list(obj.votes ?? obj.vote_history);
  const discovery = obj.discovery as Obj | null | undefined;
  const xmatch = list(obj.crossmatches ?? obj.cross_matches ?? obj.annotations);
  const reviews = list(obj.reviews);
  return (
    <div className="flex flex-col gap-4">
      <h1 className="text-xl font-semibold">Object {String(obj.name ?? obj.id)}</h1>
      {obj.requested_id != null && Number(obj.requested_id) !== Number(obj.id) && (
        <p role="note" className="text-sm" data-testid="merged-note">Object {String(obj.requested_id)} was merged into this one.</p>
      )}
      {list(obj.merged_ids).length > 0 && (
        <p className="text-sm text-slate-700 dark:text-slate-300">Also known as object {list(obj.merged_ids).map(String).join(", ")} (merged).</p>
      )}
      <section className={card}><Facts data={obj} />
        {discovery && <p className="mt-2 text-sm">Discovery {String(discovery.name ?? discovery.id)}: <strong>{String(discovery.status)}</strong></p>}
      </section>
      {atLeast(session?.role, "expert") && (
        <ExpertActions objectId={Number(obj.id)}
          discovery={discovery ? { id: Number(discovery.id), status: String(discovery.status), name: discovery.name as string | null } : null}
          onChange={load} />
      )}
      <section className={card} aria-labelledby="lc-title">
        <h2 id="lc-title" className="mb-2 font-semibold">Light curve</h2>
        <LightCurve points={points} />
      </section>
      {Number.isFinite(ra) && Number.isFinite(dec) && (
        <nav aria-label="Elsewhere" className="flex flex-wrap gap-3 text-sm">
          {externalLinks(ra, dec).map((l) => <a key={l.name} href={l.url} target="_blank" rel="noreferrer noopener" className="underline">{l.name}</a>)}
        </nav>
      )}
      {members.length > 0 && (
        <section className={card} aria-labelledby="epochs-title">
          <h2 id="epochs-title" className="mb-2 font-semibold">Epochs ({members.length})</h2>
          <div className="flex flex-col gap-3">
            {members.slice(0, 12).map((d) => {
              const id = Number(d.id ?? d.detection_id);
              return (
                <div key={id} className="flex flex-wrap items-center gap-2">
                  <Link href={`/detection?id=${id}`} className="w-40 text-sm underline">#{id} MJD {Number(d.mjd).toFixed(2)}</Link>
                  {cutoutUrls(d, id).map((c) => <Cutout key={c.label} path={c.url} label={c.label} size={100} />)}
                </div>
              );
            })}
          </div>
        </section>
      )}
      {(votes.length > 0 || comments.length > 0 || xmatch.length > 0 || reviews.length > 0) && (
        <section className={card}>
          {votes.length > 0 && <><h2 className="font-semibold">Votes</h2><ul className="text-sm">{votes.map((v, i) => <li key={i}>{String(v.username ?? v.user ?? "")}: {String(v.label)} {v.classification ? `· ${String(v.classification)}` : ""}</li>)}</ul></>}
          {reviews.length > 0 && <><h2 className="font-semibold">Expert reviews</h2><ul className="text-sm">{reviews.map((r, i) => <li key={i}>{String(r.username)}: {String(r.verdict)} {r.classification ? `· ${String(r.classification)}` : ""} {r.importance != null ? `· importance ${String(r.importance)}/5` : ""} {r.notes ? `· ${String(r.notes)}` : ""}</li>)}</ul></>}
          {xmatch.length > 0 && <><h2 className="mt-2 font-semibold">Cross-matches</h2><ul className="text-sm">{xmatch.map((x, i) => <li key={i}>{String(x.kind ?? "")} {String(x.name ?? "")} {x.separation_arcsec != null ? `${Number(x.separation_arcsec).toFixed(2)}″` : ""} {x.mag != null ? `${Number(x.mag).toFixed(2)} mag` : ""} <span className="text-slate-700 dark:text-slate-300">{String(x.source ?? "")}</span></li>)}</ul></>}
          {comments.length > 0 && <><h2 className="mt-2 font-semibold">Comments</h2><ul className="text-sm">{comments.map((c, i) => <li key={i} className="whitespace-pre-wrap">{String(c.username ?? c.author ?? "")}: {String(c.body ?? c.text ?? "")}</li>)}</ul></>}
        </section>
      )}
    </div>
  );
}
