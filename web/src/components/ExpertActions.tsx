"use client";
import { useRouter } from "next/navigation";
import { useState } from "react";
import { api } from "@/lib/api";
import {
  discoveryBody,
  moveBody,
  nextStatuses,
  reviewBody,
  STATUS_NAMES,
  type DiscoveryStatus,
} from "@/lib/review";

interface Discovery { id: number; status: string; name?: string | null }

const field = "rounded border border-slate-400 bg-white px-1 py-0.5 dark:border-slate-600 dark:bg-slate-900";
const btn = "rounded bg-indigo-700 px-3 py-1 text-sm text-white hover:bg-indigo-800";

/**
 * The expert's actions on an object (experts and admins): a review (confirm/dispute, importance
 * 1–5, classification, notes), marking it a discovery and moving the discovery on, a cross-match
 * now, merging another object into it (one source seen twice; the older id is kept and the page
 * follows it) and a TNS AT-report preview. Each posts to the API and reloads the object; a refusal is
 * shown with the API's reason.
 */
export function ExpertActions({ objectId, discovery, onChange }: {
  objectId: number;
  discovery: Discovery | null;
  onChange: () => void;
}) {
  const [review, setReview] = useState({ verdict: "confirm", importance: "", classification: "", notes: "" });
  const [disc, setDisc] = useState({ name: "", importance: "", notes: "" });
  const [move, setMove] = useState({ status: "", note: "" });
  const [message, setMessage] = useState<{ ok: boolean; text: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const [report, setReport] = useState<string | null>(null);
  const [other, setOther] = useState("");
  const router = useRouter();

  // `what` says what happened ("review saved"); `action` names it in a refusal ("merge refused").
  const run = async (what: string, call: () => Promise<unknown>, action = what.replace(/ed$/, "")) => {
    setBusy(true);
    try {
      await call();
      setMessage({ ok: true, text: what });
      onChange();
    } catch (err) {
      setMessage({ ok: false, text: `${action} refused: ${err instanceof Error ? err.message : String(err)}` });
    } finally {
      setBusy(false);
    }
  };

  const moves = discovery ? nextStatuses(discovery.status) : [];
  return (
    <section aria-labelledby="expert-title" data-testid="expert-actions"
      className="rounded-lg border border-indigo-300 bg-white p-3 dark:border-indigo-800 dark:bg-slate-900">
      <h2 id="expert-title" className="mb-2 font-semibold">Expert actions</h2>
      {message && (
        <p role="status" data-testid="expert-message"
          className={`mb-2 text-sm ${message.ok ? "text-emerald-800 dark:text-emerald-300" : "text-red-800 dark:text-red-300"}`}>
          {message.text}
        </p>
      )}
      <form aria-label="Expert review" className="flex flex-wrap items-end gap-3 text-sm"
        onSubmit={(e) => { e.preventDefault(); void run("review saved", () => api(`/objects/${objectId}/reviews`, { method: "POST", json: reviewBody(review) }), "review"); }}>
        <fieldset className="flex gap-3">
          <legend className="sr-only">Verdict</legend>
          {(["confirm", "dispute"] as const).map((v) => (
            <label key={v} className="flex items-center gap-1">
              <input type="radio" name="verdict" value={v} checked={review.verdict === v}
                onChange={() => setReview({ ...review, verdict: v })} />
              {v === "confirm" ? "Confirm" : "Dispute"}
            </label>
          ))}
        </fieldset>
        <label className="flex flex-col">Importance
          <select className={field} value={review.importance} onChange={(e) => setReview({ ...review, importance: e.target.value })}>
            <option value="">—</option>
            {[1, 2, 3, 4, 5].map((n) => <option key={n} value={n}>{n}{n === 1 ? " (routine)" : n === 5 ? " (major)" : ""}</option>)}
          </select>
        </label>
        <label className="flex flex-col">Classification
          <input className={field} value={review.classification} placeholder="transient/supernova"
            onChange={(e) => setReview({ ...review, classification: e.target.value })} />
        </label>
        <label className="flex min-w-64 flex-1 flex-col">Notes
          <textarea className={field} rows={2} value={review.notes} onChange={(e) => setReview({ ...review, notes: e.target.value })} />
        </label>
        <button type="submit" className={btn} disabled={busy}>Save review</button>
      </form>

      {discovery === null ? (
        <form aria-label="Mark as discovery" className="mt-3 flex flex-wrap items-end gap-3 text-sm"
          onSubmit={(e) => { e.preventDefault(); void run("marked as a discovery", () => api(`/objects/${objectId}/discovery`, { method: "POST", json: discoveryBody(disc) })); }}>
          <label className="flex flex-col">Discovery name
            <input className={field} value={disc.name} onChange={(e) => setDisc({ ...disc, name: e.target.value })} />
          </label>
          <label className="flex flex-col">Discovery importance
            <select className={field} value={disc.importance} onChange={(e) => setDisc({ ...disc, importance: e.target.value })}>
              <option value="">—</option>
              {[1, 2, 3, 4, 5].map((n) => <option key={n} value={n}>{n}</option>)}
            </select>
          </label>
          <label className="flex min-w-64 flex-1 flex-col">Discovery notes
            <input className={field} value={disc.notes} onChange={(e) => setDisc({ ...disc, notes: e.target.value })} />
          </label>
          <button type="submit" className={btn} disabled={busy}>Mark as discovery</button>
        </form>
      ) : (
        <div className="mt-3 flex flex-col gap-2 text-sm">
          <p>Discovery #{discovery.id}{discovery.name ? ` (${discovery.name})` : ""}: <strong data-testid="discovery-status">{STATUS_NAMES[discovery.status as DiscoveryStatus] ?? discovery.status}</strong></p>
          {moves.length > 0 ? (
            <form aria-label="Move the discovery on" className="flex flex-wrap items-end gap-3"
              onSubmit={(e) => { e.preventDefault(); void run("discovery moved", () => api(`/discoveries/${discovery.id}`, { method: "PATCH", json: moveBody(discovery.status, move.status, move.note) }), "move"); }}>
              <label className="flex flex-col">New status
                <select className={field} value={move.status} onChange={(e) => setMove({ ...move, status: e.target.value })}>
                  <option value="">choose…</option>
                  {moves.map((s) => <option key={s} value={s}>{STATUS_NAMES[s]}</option>)}
                </select>
              </label>
              <label className="flex min-w-64 flex-1 flex-col">Status note
                <input className={field} value={move.note} onChange={(e) => setMove({ ...move, note: e.target.value })} />
              </label>
              <button type="submit" className={btn} disabled={busy}>Move</button>
            </form>
          ) : <p>This discovery is final.</p>}
          <div className="flex flex-wrap gap-2">
            <button type="button" className={btn} disabled={busy}
              onClick={() => void run("TNS report built", async () => {
                const r = await api<{ report: unknown }>(`/discoveries/${discovery.id}/tns-report?send=false`, { method: "POST" });
                setReport(JSON.stringify(r.report, null, 2));
              })}>
              TNS report (preview)
            </button>
          </div>
          {report && <pre data-testid="tns-report" className="max-h-64 overflow-auto rounded bg-slate-100 p-2 text-xs dark:bg-slate-800">{report}</pre>}
        </div>
      )}
      <div className="mt-3 flex flex-wrap items-end gap-3 text-sm">
        <button type="button" className={btn} disabled={busy}
          onClick={() => void run("cross-matched", () => api(`/objects/${objectId}/crossmatch`, { method: "POST" }))}>
          Cross-match now
        </button>
        <form aria-label="Merge objects" className="flex flex-wrap items-end gap-2"
          onSubmit={(e) => {
            e.preventDefault();
            const otherId = Number(other);
            void run("merged", async () => {
              const r = await api<{ object: { id: number } }>(`/objects/${objectId}/merge`, { method: "POST", json: { other_id: otherId } });
              setOther("");
              if (r.object.id !== objectId) router.replace(`/object?id=${r.object.id}`);
            }, "merge");
          }}>
          <label className="flex flex-col">Same source as object #
            <input className={field} inputMode="numeric" pattern="[0-9]+" required value={other}
              onChange={(e) => setOther(e.target.value.trim())} />
          </label>
          <button type="submit" className={btn} disabled={busy || !other}>Merge</button>
        </form>
      </div>
    </section>
  );
}
