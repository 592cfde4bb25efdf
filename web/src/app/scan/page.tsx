"use client";
import Link from "next/link";
import { useCallback, useEffect, useReducer, useRef, useState } from "react";
import { Cutout } from "@/components/Cutout";
import { HelpOverlay } from "@/components/HelpOverlay";
import { Sparkline } from "@/components/Sparkline";
import { ApiError, atLeast } from "@/lib/api";
import {
  CLASSIFICATIONS,
  DEFAULT_FILTERS,
  escalate,
  fetchQueue,
  isTransient,
  postComment,
  postVote,
  readOutbox,
  undoLastVote,
  undoVote,
  writeOutbox,
  type Outgoing,
  type QueueFilters,
} from "@/lib/curation";
import { onHealth } from "@/lib/health";
import { prefetch } from "@/lib/images";
import * as Q from "@/lib/queue";
import { useSession } from "@/lib/useSession";

type Action =
  | { t: "reset" }
  | { t: "page"; items: Q.ScanItem[]; cursor: string | null }
  | { t: "move"; step: number }
  | { t: "vote"; id: number; label: Q.Label; classification?: string; comment?: string }
  | { t: "confirm"; id: number }
  | { t: "rollback"; id: number; error: string }
  | { t: "undo" }
  | { t: "select"; id: number };

function reducer(q: Q.QueueState, a: Action): Q.QueueState {
  switch (a.t) {
    case "reset": return Q.emptyQueue();
    case "page": return Q.appendPage(q, a.items, a.cursor);
    case "move": return Q.move(q, a.step);
    case "vote": return Q.castVote(q, a.id, a.label, { classification: a.classification, comment: a.comment });
    case "confirm": return Q.confirmVote(q, a.id);
    case "rollback": return Q.rollbackVote(q, a.id, a.error);
    case "undo": return Q.undoLast(q)[0];
    case "select": return Q.toggleSelect(q, a.id);
  }
}

const fmt = (v: number | null, d = 2) => (v === null ? "—" : v.toFixed(d));

function ageOf(item: Q.ScanItem): string {
  const mjdNow = Date.now() / 86400000 + 40587;
  const days = item.mjd !== null ? mjdNow - item.mjd : item.createdAt ? (Date.now() - Date.parse(item.createdAt)) / 86400000 : null;
  if (days === null || !Number.isFinite(days)) return "—";
  return days < 1 ? `${(days * 24).toFixed(1)} h` : `${days.toFixed(1)} d`;
}

export default function ScanPage() {
  const session = useSession();
  const canVote = atLeast(session?.role, "curator");
  const [q, dispatch] = useReducer(reducer, undefined, Q.emptyQueue);
  const [filters, setFilters] = useState<QueueFilters>(DEFAULT_FILTERS);
  const [curated, setCurated] = useState(true);
  const [help, setHelp] = useState(false);
  const [comment, setComment] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [down, setDown] = useState<string | null>(null);
  const [waiting, setWaiting] = useState(0);
  const loading = useRef(false);
  const qRef = useRef(q);
  qRef.current = q;
  const item = Q.current(q);

  const load = useCallback(async (f: QueueFilters, cursor: string | null) => {
    if (loading.current) return;
    loading.current = true;
    try {
      const page = await fetchQueue(f, cursor);
      setCurated(page.curated);
      setDown(null);
      dispatch({ t: "page", items: page.items, cursor: page.next });
    } catch (err) {
      setDown(err instanceof ApiError ? err.message : "the API cannot be reached; retrying");
      setTimeout(() => { loading.current = false; void load(f, cursor); }, 3000);
      return;
    } finally {
      loading.current = false;
    }
  }, []);

  useEffect(() => {
    dispatch({ t: "reset" });
    void load(filters, null);
  }, [filters, load]);

  useEffect(() => {
    if (q.items.length && Q.needsMore(q)) void load(filters, q.cursor);
    prefetch(Q.upcoming(q, 2).flatMap((i) => i.cutouts.map((c) => c.url)).filter(Boolean));
  }, [q, filters, load]);

  /** Deliver a vote; transient failures go to the outbox, refusals roll back visibly. */
  const send = useCallback(async (v: Outgoing) => {
    try {
      await postVote(v.id, { label: v.label, classification: v.classification, comment: v.comment });
      dispatch({ t: "confirm", id: v.id });
      return true;
    } catch (err) {
      if (isTransient(err)) {
        writeOutbox([...readOutbox().filter((o) => o.id !== v.id), v]);
        setWaiting(readOutbox().length);
        setDown(err instanceof ApiError && err.status === 401 ? "session expired: log in again, your votes are kept" : "the API cannot be reached: votes are kept and retried");
      } else {
        dispatch({ t: "rollback", id: v.id, error: err instanceof Error ? err.message : String(err) });
        setNotice(`vote on #${v.id} refused: ${err instanceof Error ? err.message : err}`);
      }
      return false;
    }
  }, []);

  // Retry the outbox at start and every few seconds while it holds anything.
  useEffect(() => {
    const flush = async () => {
      const box = readOutbox();
      setWaiting(box.length);
      if (!box.length) return;
      writeOutbox([]);
      let ok = true;
      for (const v of box) ok = (await send(v)) && ok;
      setWaiting(readOutbox().length);
      if (ok) setDown(null);
    };
    void flush();
    const t = setInterval(flush, 4000);
    const off = onHealth((h) => { if (h.up) void flush(); }); // back: send at once
    return () => { clearInterval(t); off(); };
  }, [send]);

  const vote = useCallback((label: Q.Label, classification?: string, text?: string) => {
    const it = Q.current(qRef.current);
    if (!it || !canVote) return;
    dispatch({ t: "vote", id: it.id, label, classification, comment: text });
    void send({ id: it.id, label, classification, comment: text });
  }, [canVote, send]);

  const undo = useCallback(async () => {
    const [, id] = Q.undoLast(qRef.current);
    if (id === null) {
      // Nothing voted on this page (e.g. after a reload): the API knows this session's votes.
      try {
        const r = await undoLastVote();
        setNotice(`vote on #${r.detection_id} undone`);
      } catch (err) {
        setNotice(`nothing to undo: ${err instanceof Error ? err.message : err}`);
      }
      return;
    }
    dispatch({ t: "undo" });
    try {
      await undoVote(id);
      setNotice(`vote on #${id} undone`);
    } catch (err) {
      setNotice(`undo of #${id} refused: ${err instanceof Error ? err.message : err}`);
    }
  }, []);

  const toExpert = useCallback(async () => {
    const it = Q.current(qRef.current);
    if (!it) return;
    dispatch({ t: "move", step: 1 });
    try {
      await escalate(it.id);
      setNotice(`#${it.id} sent to the expert queue`);
    } catch (err) {
      setNotice(`escalation of #${it.id} refused: ${err instanceof Error ? err.message : err}`);
    }
  }, []);

  const submitComment = async (text: string) => {
    const it = Q.current(qRef.current);
    setComment(null);
    if (!it || !text.trim()) return;
    try {
      await postComment(it.id, text);
      setNotice(`comment added to #${it.id}`);
    } catch (err) {
      setNotice(`comment refused: ${err instanceof Error ? err.message : err}`);
    }
  };

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const el = e.target as HTMLElement;
      if (e.ctrlKey || e.metaKey || e.altKey || el.closest("input, textarea, select, [contenteditable]")) return;
      if (comment !== null) return;
      const k = e.key;
      if (k === "?") { setHelp((h) => !h); e.preventDefault(); return; }
      if (k === "Escape") { setHelp(false); return; }
      if (help) return;
      if (k === "j") dispatch({ t: "move", step: 1 });
      else if (k === "k") dispatch({ t: "move", step: -1 });
      else if (!canVote) return;
      else if (k === "r") vote("real");
      else if (k === "b") vote("bogus");
      else if (k === "s") vote("skip");
      else if (k === "e") void toExpert();
      else if (k === "u") void undo();
      else if (k === "c") { setComment(""); e.preventDefault(); }
      else if (k === "x") { const it = Q.current(qRef.current); if (it) dispatch({ t: "select", id: it.id }); }
      else {
        const c = CLASSIFICATIONS.find((x) => x.key === k);
        if (!c) return;
        vote(c.label, c.path);
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [canVote, comment, help, toExpert, undo, vote]);

  const bulk = async (label: Q.Label) => {
    for (const id of q.selected) {
      dispatch({ t: "select", id });
      dispatch({ t: "vote", id, label });
      void send({ id, label });
    }
  };

  const counts = Q.tally(q);
  const myVote = item ? q.votes[item.id] : undefined;
  const btn = "rounded border border-slate-400 px-2 py-1 text-sm hover:bg-slate-200 dark:border-slate-600 dark:hover:bg-slate-800";

  return (
    <div className="flex flex-col gap-3">
      <div className="flex flex-wrap items-end gap-3">
        <h1 className="text-xl font-semibold">Scanning</h1>
        <form className="flex flex-wrap items-end gap-2 text-sm" onSubmit={(e) => e.preventDefault()} aria-label="Sort and filter">
          <label className="flex flex-col">Order
            <select value={filters.order} onChange={(e) => setFilters({ ...filters, order: e.target.value as QueueFilters["order"] })}
              className="rounded border border-slate-400 bg-white px-1 py-0.5 dark:border-slate-600 dark:bg-slate-900">
              <option value="score">score</option><option value="uncertainty">uncertainty</option><option value="age">age</option>
            </select>
          </label>
          {([["minScore", "Min score"], ["minSnr", "Min S/N"], ["maxAgeDays", "Max age (d)"]] as const).map(([key, name]) => (
            <label key={key} className="flex flex-col">{name}
              <input inputMode="decimal" size={5} defaultValue={filters[key]}
                onBlur={(e) => e.target.value !== filters[key] && setFilters({ ...filters, [key]: e.target.value })}
                onKeyDown={(e) => { if (e.key === "Enter") (e.target as HTMLInputElement).blur(); }}
                className="w-20 rounded border border-slate-400 bg-white px-1 py-0.5 dark:border-slate-600 dark:bg-slate-900" />
            </label>
          ))}
        </form>
        <p className="ml-auto text-sm text-slate-700 dark:text-slate-300" data-testid="tally" aria-live="polite">
          {counts.stored} stored · {counts.pending} sending · {counts.failed} refused{waiting ? ` · ${waiting} waiting` : ""}
        </p>
        <button type="button" className={btn} onClick={() => setHelp(true)}>Keys (?)</button>
      </div>
      {down && <div role="alert" className="rounded bg-amber-100 px-3 py-2 text-sm text-amber-900 dark:bg-amber-900 dark:text-amber-100" data-testid="banner">{down}</div>}
      {!curated && <p className="text-sm text-slate-700 dark:text-slate-300">This server has no scanning queue yet: showing the newest detections.</p>}
      {notice && <p className="text-sm" role="status" data-testid="notice">{notice}</p>}
      {!canVote && session && <p className="text-sm text-slate-700 dark:text-slate-300" data-testid="read-only">Read-only: your role ({session.role}) cannot vote.</p>}
      {item ? (
        <section aria-label={`Candidate ${item.id}`} data-testid="candidate" data-detection-id={item.id}
          className="rounded-lg border border-slate-200 bg-white p-3 dark:border-slate-800 dark:bg-slate-900">
          <div className="flex flex-wrap items-baseline gap-x-4 gap-y-1">
            <h2 className="text-lg font-semibold">Detection #{item.id}</h2>
            <span className="text-sm text-slate-700 dark:text-slate-300">{q.index + 1} of {q.items.length}{q.exhausted ? "" : "+"}</span>
            {q.selected.includes(item.id) && <span className="rounded bg-indigo-100 px-1 text-xs text-indigo-900 dark:bg-indigo-900 dark:text-indigo-100">selected</span>}
            {myVote && (
              <span data-testid="my-vote" data-state={myVote.state}
                className={`rounded px-1.5 text-sm ${myVote.state === "failed" ? "bg-red-100 text-red-900 dark:bg-red-900 dark:text-red-100" : "bg-emerald-100 text-emerald-900 dark:bg-emerald-900 dark:text-emerald-100"}`}>
                {myVote.label}{myVote.classification ? ` · ${myVote.classification}` : ""} ({myVote.state}{myVote.error ? `: ${myVote.error}` : ""})
              </span>
            )}
            {item.objectId !== null && <Link className="text-sm underline" href={`/object?id=${item.objectId}`}>object {item.objectId}</Link>}
          </div>
          <div className="mt-3 flex flex-wrap gap-3">
            {item.cutouts.map((c) => <Cutout key={c.label} path={c.url} label={c.label} />)}
          </div>
          <dl className="mt-3 grid grid-cols-2 gap-x-4 gap-y-1 text-sm sm:grid-cols-4">
            <div><dt className="text-slate-700 dark:text-slate-300">Score P(real)</dt><dd data-testid="score" className="font-mono">{fmt(item.score, 3)}</dd></div>
            <div><dt className="text-slate-700 dark:text-slate-300">S/N</dt><dd className="font-mono">{fmt(item.snr, 1)}</dd></div>
            <div><dt className="text-slate-700 dark:text-slate-300">Magnitude</dt><dd className="font-mono">{fmt(item.mag)}</dd></div>
            <div><dt className="text-slate-700 dark:text-slate-300">Age</dt><dd className="font-mono">{ageOf(item)}</dd></div>
            <div><dt className="text-slate-700 dark:text-slate-300">RA, Dec (°)</dt><dd className="font-mono">{item.ra.toFixed(5)}, {item.dec.toFixed(5)}</dd></div>
            <div><dt className="text-slate-700 dark:text-slate-300">Nearest star</dt><dd>{item.nearestStar ?? "—"}</dd></div>
            <div><dt className="text-slate-700 dark:text-slate-300">History</dt><dd>{item.history.length > 1 ? <Sparkline values={item.history} /> : (item.objectSummary ?? "new")}</dd></div>
          </dl>
          {item.annotations.length > 0 && (
            <details className="mt-2 text-sm"><summary>Annotations ({item.annotations.length})</summary>
              <table className="mt-1"><tbody>{item.annotations.map(([k, v]) => <tr key={k}><th className="pr-3 text-left font-normal text-slate-700 dark:text-slate-300">{k}</th><td className="font-mono">{v}</td></tr>)}</tbody></table>
            </details>
          )}
          {canVote && (
            <div className="mt-3 flex flex-wrap gap-2" data-testid="vote-controls">
              <button type="button" className={btn} onClick={() => vote("real")}>Real (r)</button>
              <button type="button" className={btn} onClick={() => vote("bogus")}>Bogus (b)</button>
              <button type="button" className={btn} onClick={() => vote("skip")}>Skip (s)</button>
              <button type="button" className={btn} onClick={() => void toExpert()}>Expert (e)</button>
              <button type="button" className={btn} onClick={() => void undo()}>Undo (u)</button>
              <button type="button" className={btn} onClick={() => setComment("")}>Comment (c)</button>
            </div>
          )}
        </section>
      ) : (
        <p className="text-sm" data-testid="empty">{down ? "" : q.exhausted ? "Nothing left to scan." : "Loading the queue…"}</p>
      )}
      {canVote && q.selected.length > 0 && (
        <div className="flex items-center gap-2 text-sm" data-testid="bulk">
          {q.selected.length} selected:
          <button type="button" className={btn} onClick={() => void bulk("real")}>all real</button>
          <button type="button" className={btn} onClick={() => void bulk("bogus")}>all bogus</button>
        </div>
      )}
      {comment !== null && (
        <form className="flex flex-col gap-2" onSubmit={(e) => { e.preventDefault(); void submitComment(comment); }}>
          <label className="flex flex-col text-sm">Comment on #{item?.id}
            <textarea autoFocus value={comment} onChange={(e) => setComment(e.target.value)} rows={3}
              onKeyDown={(e) => { if (e.key === "Escape") setComment(null); if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); void submitComment(comment); } }}
              className="rounded border border-slate-400 bg-white p-1 dark:border-slate-600 dark:bg-slate-900" />
          </label>
        </form>
      )}
      {help && <HelpOverlay onClose={() => setHelp(false)} />}
    </div>
  );
}
