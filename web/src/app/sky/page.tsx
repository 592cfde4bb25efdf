"use client";
import Link from "next/link";
import { useEffect, useMemo, useState } from "react";
import { SkyMap } from "@/components/SkyMap";
import { api, type Page } from "@/lib/api";
import { HIPS_PATH, ONLINE_SURVEYS, hipsUrl, parseProperties, pointHref, skyPoints, type Footprint } from "@/lib/sky";

interface Det { id: number; ra: number; dec: number; label: string | null; mag: number | null }
interface Obj { id: number; ra: number; dec: number; label: string | null; peak_mag: number | null; n_detections: number }

const card = "rounded-lg border border-slate-200 bg-white p-3 dark:border-slate-800 dark:bg-slate-900";

export default function SkyPage() {
  const [dets, setDets] = useState<Det[]>([]);
  const [objs, setObjs] = useState<Obj[]>([]);
  const [foots, setFoots] = useState<Footprint[]>([]);
  const [props, setProps] = useState<Record<string, string> | null | undefined>(undefined);
  const [survey, setSurvey] = useState<string>("");
  const [show, setShow] = useState({ detections: true, objects: true, footprints: true });
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    const own = hipsUrl();
    setSurvey(own);
    fetch(`${own}/properties`).then(async (r) => setProps(r.ok ? parseProperties(await r.text()) : null)).catch(() => setProps(null));
    Promise.all([
      api<Page<Det>>("/detections?order=desc&limit=1000"),
      api<Page<Obj>>("/objects?limit=1000"),
      api<{ items: Footprint[] }>("/observations/footprints?limit=5000"),
    ]).then(([d, o, f]) => { setDets(d.items); setObjs(o.items); setFoots(f.items); })
      .catch((e: Error) => setError(e.message));
  }, []);

  const points = useMemo(() => skyPoints(dets, objs), [dets, objs]);
  // Start where AstrID's own sky is (the HiPS' initial position), else at the newest object.
  const target = useMemo(() => {
    if (props && props.hips_initial_ra) {
      return { ra: Number(props.hips_initial_ra), dec: Number(props.hips_initial_dec), fov: Math.max(0.05, Number(props.hips_initial_fov) * 1.5 || 1) };
    }
    const o = objs[0];
    return o ? { ra: o.ra, dec: o.dec, fov: 1 } : { ra: 0, dec: 0, fov: 60 };
  }, [props, objs]);
  const ready = props !== undefined && survey !== "";
  const own = survey === "" ? "" : hipsUrl();

  return (
    <div className="flex flex-col gap-3">
      <h1 className="text-xl font-semibold">Sky map</h1>
      {error && <div role="alert" className="rounded bg-amber-100 px-3 py-2 text-sm text-amber-900 dark:bg-amber-900 dark:text-amber-100">API: {error}</div>}
      {props === null && (
        <p data-testid="hips-missing" className="rounded bg-amber-100 px-3 py-2 text-sm text-amber-900 dark:bg-amber-900 dark:text-amber-100">
          AstrID&apos;s own sky is not built yet: run <code>astrid sky build-hips</code> (it is served at {HIPS_PATH}/). Online surveys still work with internet.
        </p>
      )}
      <div className="flex flex-wrap items-center gap-4 text-sm">
        <label className="flex items-center gap-2">Survey
          <select value={survey} onChange={(e) => setSurvey(e.target.value)} data-testid="survey"
            className="rounded border border-slate-400 bg-white px-1 py-0.5 dark:border-slate-600 dark:bg-slate-900">
            <option value={own}>AstrID reference sky (offline){props?.hips_order ? `, order ${props.hips_order}` : ""}</option>
            {ONLINE_SURVEYS.map(([id, name]) => <option key={id} value={id}>{name}</option>)}
          </select>
        </label>
        {(["detections", "objects", "footprints"] as const).map((k) => (
          <label key={k} className="flex items-center gap-1">
            <input type="checkbox" checked={show[k]} onChange={(e) => setShow({ ...show, [k]: e.target.checked })} />
            {k === "detections" ? `Detections (${dets.length})` : k === "objects" ? `Objects (${objs.length})` : `Footprints (${foots.length})`}
          </label>
        ))}
      </div>
      {ready ? <SkyMap survey={survey} target={target} points={points} footprints={foots} show={show} /> : <p>Loading…</p>}
      <p className="text-xs text-slate-700 dark:text-slate-300">
        Amber circles: detections · cyan squares: objects · violet: observation footprints. Click a marker to open its page.
      </p>
      <section className={card} aria-labelledby="objects-title">
        <h2 id="objects-title" className="font-semibold">Objects on the map ({objs.length})</h2>
        <ul className="mt-2 grid gap-x-4 text-sm sm:grid-cols-2 lg:grid-cols-3">
          {objs.slice(0, 60).map((o) => (
            <li key={o.id}><Link href={pointHref({ kind: "object", id: o.id })} className="underline">object {o.id}</Link>{" "}
              <span className="font-mono">{o.ra.toFixed(4)} {o.dec >= 0 ? "+" : ""}{o.dec.toFixed(4)}</span> · {o.n_detections} det.{o.label ? ` · ${o.label}` : ""}</li>
          ))}
        </ul>
      </section>
    </div>
  );
}
