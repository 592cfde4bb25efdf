"use client";
import { useCallback, useEffect, useState } from "react";
import { api, ApiError } from "@/lib/api";
import { useSession } from "@/lib/useSession";

interface Version { version: number; semver: string; aliases: string[]; run_id: string | null; metrics: Record<string, number> }
interface Model { name: string; aliases: Record<string, number>; versions: Version[] }
interface DriftCheck { night: string; n: number; max_psi: number; threshold: number; drifted: boolean; psi: Record<string, number> }
interface Drift { threshold: number; drifting: boolean; checks: DriftCheck[] }
interface Shadow {
  champion: string; challenger: string; n: number; n_labelled?: number; agreement: number | null;
  champion_precision?: number | null; champion_recall?: number | null;
  challenger_precision?: number | null; challenger_recall?: number | null;
}

/** The figures shown per version, in this order, when the run logged them. */
const METRICS = [
  ["test_roc_auc", "test ROC-AUC"],
  ["challenger_curated_holdout_roc_auc", "held-out curated ROC-AUC"],
  ["challenger_alerts_holdout_roc_auc", "held-out alert nights ROC-AUC"],
  ["best_val_roc_auc", "validation ROC-AUC"],
  ["train_energy_kwh", "training kWh"],
  ["train_emissions_kg_co2eq", "training kg CO₂eq"],
  ["auc", "AUC"],
] as const;

const fmt = (v: number | null | undefined) => (v == null ? "—" : Number(v.toPrecision(4)).toString());
const btn = "rounded border border-slate-400 px-2 py-0.5 text-sm hover:bg-slate-100 disabled:opacity-50 dark:border-slate-600 dark:hover:bg-slate-800";

function DriftSummary({ name }: { name: string }) {
  const [drift, setDrift] = useState<Drift | null>(null);
  useEffect(() => {
    api<Drift>(`/models/${encodeURIComponent(name)}/drift?limit=5`).then(setDrift).catch(() => setDrift(null));
  }, [name]);
  const last = drift?.checks[0];
  return (
    <div data-testid="drift">
      <h3 className="font-semibold">Drift</h3>
      {!last ? <p className="text-sm">No drift check yet (the <code>drift</code> flow writes them).</p> : (
        <p className="text-sm">
          Night MJD {last.night}: {last.n} detections, largest PSI {fmt(last.max_psi)} (threshold {fmt(last.threshold)}) —{" "}
          <strong className={last.drifted ? "text-red-700 dark:text-red-400" : ""}>{last.drifted ? "drifted" : "stable"}</strong>
        </p>
      )}
    </div>
  );
}

function ShadowSummary({ name, epoch }: { name: string; epoch: number }) {
  const [shadow, setShadow] = useState<Shadow | null>(null);
  const [why, setWhy] = useState<string | null>(null);
  useEffect(() => {
    api<Shadow>(`/models/${encodeURIComponent(name)}/shadow`)
      .then((s) => { setShadow(s); setWhy(null); })
      .catch((e) => { setShadow(null); setWhy(e instanceof ApiError ? e.message : String(e)); });
  }, [name, epoch]);
  return (
    <div data-testid="shadow">
      <h3 className="font-semibold">Shadow A/B</h3>
      {!shadow ? <p className="text-sm">{why ?? "Loading"}</p> : (
        <p className="text-sm">
          {shadow.champion} vs {shadow.challenger} on {shadow.n} detections ({shadow.n_labelled ?? 0} curated): agreement {fmt(shadow.agreement)};
          champion precision {fmt(shadow.champion_precision)} / recall {fmt(shadow.champion_recall)};
          challenger precision {fmt(shadow.challenger_precision)} / recall {fmt(shadow.challenger_recall)}
        </p>
      )}
    </div>
  );
}

function ModelCard({ model, admin, onChange }: { model: Model; admin: boolean; onChange: (msg: string) => void }) {
  const [busy, setBusy] = useState(false);
  const [epoch, setEpoch] = useState(0);
  const champion = model.versions.find((v) => v.aliases.includes("champion"));
  const challenger = model.versions.find((v) => v.aliases.includes("challenger"));
  const shown = METRICS.filter(([k]) => model.versions.some((v) => k in v.metrics));
  const act = async (path: string, json?: unknown) => {
    setBusy(true);
    try {
      const v = await api<Version>(`/models/${encodeURIComponent(model.name)}/${path}`, { method: "POST", json });
      onChange(`${model.name}: champion is now ${v.semver}`);
      setEpoch((e) => e + 1);
    } catch (e) {
      onChange(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section aria-labelledby={`m-${model.name}`} className="flex flex-col gap-3 rounded-lg border border-slate-200 bg-white p-3 dark:border-slate-800 dark:bg-slate-900">
      <h2 id={`m-${model.name}`} className="text-lg font-semibold">{model.name}</h2>
      <p className="text-sm">
        Champion: <strong data-testid="champion">{champion ? champion.semver : "none"}</strong>
        {" · "}Challenger: <strong data-testid="challenger">{challenger ? challenger.semver : "none"}</strong>
      </p>
      <div className="overflow-x-auto">
        <table className="min-w-full text-sm" data-testid="versions">
          <caption className="sr-only">Registered versions of {model.name}</caption>
          <thead><tr>
            <th scope="col" className="px-2 text-left">version</th>
            <th scope="col" className="px-2 text-left">semver</th>
            <th scope="col" className="px-2 text-left">aliases</th>
            {shown.map(([k, label]) => <th key={k} scope="col" className="px-2 text-left">{label}</th>)}
            {admin && <th scope="col" className="px-2 text-left">actions</th>}
          </tr></thead>
          <tbody>{model.versions.map((v) => (
            <tr key={v.version} className="border-t border-slate-200 dark:border-slate-800" data-version={v.semver}>
              <td className="px-2 font-mono">{v.version}</td>
              <td className="px-2 font-mono">{v.semver}</td>
              <td className="px-2">{v.aliases.join(", ")}</td>
              {shown.map(([k]) => <td key={k} className="px-2 font-mono">{fmt(v.metrics[k])}</td>)}
              {admin && (
                <td className="px-2">
                  {!v.aliases.includes("champion") && (
                    <button type="button" className={btn} disabled={busy} onClick={() => void act("promote", { version: String(v.version) })}>
                      Promote {v.semver}
                    </button>
                  )}
                </td>
              )}
            </tr>
          ))}</tbody>
        </table>
      </div>
      {admin && (
        <div>
          <button type="button" className={btn} disabled={busy} onClick={() => void act("rollback")}>Roll back champion</button>
        </div>
      )}
      <DriftSummary name={model.name} />
      <ShadowSummary name={model.name} epoch={epoch} />
    </section>
  );
}

export default function ModelsPage() {
  const session = useSession();
  const [models, setModels] = useState<Model[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const load = useCallback(() => {
    api<Model[]>("/models").then((m) => { setModels(m); setError(null); })
      .catch((e) => { setModels([]); setError(e instanceof Error ? e.message : String(e)); });
  }, []);
  useEffect(load, [load]);
  const admin = session?.role === "admin";
  return (
    <div className="flex flex-col gap-4">
      <h1 className="text-xl font-semibold">Models</h1>
      <p className="text-sm">Registered real/bogus models, their champion and challenger, drift and shadow A/B.{admin ? " As an admin you can promote a version or roll the champion back." : ""}</p>
      {message && <p role="status" className="text-sm">{message}</p>}
      {error && <p role="alert" className="text-red-700 dark:text-red-400">{error}</p>}
      {models === null ? <p>Loading</p> : models.length === 0 ? <p>No registered model yet (<code>astrid train</code> registers one).</p> : (
        models.map((m) => <ModelCard key={m.name} model={m} admin={admin} onChange={(msg) => { setMessage(msg); load(); }} />)
      )}
    </div>
  );
}
