"use client";
import { useEffect, useState } from "react";
import { Degraded } from "@/components/Degraded";
import { api, atLeast } from "@/lib/api";
import { degradedReasons, exportDocument, latestByCheck, loadResults, saveResults, type StoredResult } from "@/lib/ops";
import { useSession } from "@/lib/useSession";

interface CheckInfo { name: string; description: string }
interface RunOut { ok: boolean; results: Omit<StoredResult, "at" | "log">[]; log: StoredResult["log"] }

const btn = "rounded border border-slate-500 px-2 py-0.5 text-sm hover:bg-slate-200 disabled:opacity-60 dark:hover:bg-slate-800";
const cell = "px-2 py-1 text-left align-top";

function smokeLine(d: Record<string, unknown> | null): string | null {
  if (!d || !("injected" in d)) return null;
  return `found ${d.detected} of ${d.injected} injected transients (${d.bright_detected} of ${d.bright} with S/N > 10), ${d.candidates} candidates, ${d.seconds} s`;
}

export default function DiagnosticsPage() {
  const session = useSession();
  const admin = atLeast(session?.role, "admin");
  const [checks, setChecks] = useState<CheckInfo[]>([]);
  const [results, setResults] = useState<StoredResult[]>([]);
  const [log, setLog] = useState<StoredResult["log"]>([]);
  const [running, setRunning] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    setResults(loadResults(localStorage));
    api<CheckInfo[]>("/diagnostics/checks").then(setChecks).catch((e) => setError(`cannot list the checks: ${e instanceof Error ? e.message : e}`));
  }, []);

  const runOne = async (name: string): Promise<void> => {
    setRunning(name);
    setLog((l) => [...l, { time: new Date().toISOString(), check: name, level: "info", message: `running ${name}…` }]);
    try {
      const out = await api<RunOut>("/diagnostics/run", { method: "POST", json: { check: name } });
      setLog((l) => [...l, ...out.log]);
      const at = new Date().toISOString();
      setResults(saveResults(localStorage, out.results.map((r) => ({ ...r, at, log: out.log.filter((x) => x.check === r.name) }))));
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      setLog((l) => [...l, { time: new Date().toISOString(), check: name, level: "error", message: `request refused: ${msg}` }]);
      setError(`${name}: ${msg}`);
    } finally {
      setRunning(null);
    }
  };
  // One request per check, in turn, so the log grows while "run all" goes on.
  const runAll = async () => {
    setError(null);
    for (const c of checks) await runOne(c.name);
  };
  const download = () => {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([exportDocument(results, new Date().toISOString())], { type: "application/json" }));
    a.download = "astrid-diagnostics.json";
    a.click();
  };
  const latest = latestByCheck(results, checks.map((c) => c.name));
  const reasons = degradedReasons([], Object.values(latest).filter((r): r is StoredResult => r !== undefined));
  if (error) reasons.push(error);

  return (
    <div className="flex flex-col gap-4">
      <h1 className="text-xl font-semibold">Diagnostics</h1>
      <Degraded reasons={reasons} />
      <div className="flex flex-wrap gap-2">
        {admin ? (
          <button type="button" className={btn} disabled={running !== null || checks.length === 0} onClick={() => void runAll()}>Run all checks</button>
        ) : <p className="text-sm" data-testid="read-only">Running checks is for admins; results stored in this browser are shown.</p>}
        <button type="button" className={btn} disabled={results.length === 0} onClick={download}>Export JSON</button>
        <button type="button" className={btn} disabled={results.length === 0} onClick={() => { localStorage.removeItem("astrid.diagnostics"); setResults([]); }}>Clear stored results</button>
      </div>
      <table className="min-w-full text-sm" data-testid="checks-table">
        <thead><tr>{["Check", "What it does", "Result", "Time", "Last run", ...(admin ? ["Run"] : [])].map((h) => <th key={h} scope="col" className={cell}>{h}</th>)}</tr></thead>
        <tbody>{checks.map((c) => {
          const r = latest[c.name];
          return (
            <tr key={c.name} data-check={c.name} data-ok={r ? String(r.ok) : "unknown"} className="border-t border-slate-200 dark:border-slate-800">
              <th scope="row" className={`${cell} font-mono font-normal`}>{c.name}</th>
              <td className={cell}>{c.description}</td>
              <td className={cell}>
                {running === c.name ? "running…" : r ? (
                  <span className={r.ok ? "text-green-800 dark:text-green-300" : "font-semibold text-red-700 dark:text-red-400"}>{r.ok ? "✓ " : "✗ "}{r.status}</span>
                ) : "not run"}
                {r && smokeLine(r.details) && <div data-testid="smoke-numbers">{smokeLine(r.details)}</div>}
              </td>
              <td className={`${cell} font-mono`}>{r ? `${Math.round(r.ms)} ms` : ""}</td>
              <td className={cell}>{r ? new Date(r.at).toLocaleTimeString() : ""}</td>
              {admin && <td className={cell}><button type="button" className={btn} disabled={running !== null} onClick={() => void runOne(c.name)}>Run {c.name}</button></td>}
            </tr>
          );
        })}</tbody>
      </table>
      <section aria-labelledby="log-h">
        <h2 id="log-h" className="mb-1 font-semibold">Log</h2>
        {log.length === 0 ? <p className="text-sm">Nothing run in this visit yet.</p> : (
          <ol className="max-h-80 overflow-y-auto rounded border border-slate-300 p-2 font-mono text-xs dark:border-slate-700" data-testid="diag-log" aria-live="polite">
            {log.map((l, i) => (
              <li key={i} className={l.level === "error" ? "text-red-700 dark:text-red-400" : ""}>
                <time dateTime={l.time}>{new Date(l.time).toLocaleTimeString()}</time> [{l.check}] {l.message}
              </li>
            ))}
          </ol>
        )}
      </section>
    </div>
  );
}
