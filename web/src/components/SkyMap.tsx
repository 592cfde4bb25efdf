"use client";
/**
 * Aladin Lite (imported on first use, so no other page carries it) drawing AstrID's own HiPS
 * by default, detections and objects as markers (click: their page), observation footprints as
 * polygons. The container's data attributes say what was drawn (`data-detections`,
 * `data-objects`, `data-footprints`, `data-state`), for tests and the curious.
 */
import { useRouter } from "next/navigation";
import { useEffect, useRef, useState } from "react";
import { footprintPolygon, pointHref, type Footprint, type SkyPoint } from "@/lib/sky";

export interface SkyMapProps {
  survey: string; // a HiPS URL or CDS id
  target: { ra: number; dec: number; fov: number };
  points: SkyPoint[];
  footprints: Footprint[];
  show: { detections: boolean; objects: boolean; footprints: boolean };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

export function SkyMap({ survey, target, points, footprints, show }: SkyMapProps) {
  const div = useRef<HTMLDivElement>(null);
  const aladin = useRef<Any>(null);
  const layers = useRef<{ det?: Any; obj?: Any; foot?: Any }>({});
  const [state, setState] = useState<"loading" | "ready" | "failed">("loading");
  const [error, setError] = useState<string | null>(null);
  const router = useRouter();

  // Create the viewer once.
  useEffect(() => {
    let cancelled = false;
    const cleanup: (() => void)[] = [];
    (async () => {
      try {
        const A = (await import("aladin-lite")).default;
        await A.init;
        if (cancelled || !div.current) return;
        const al = A.aladin(div.current, {
          survey,
          target: `${target.ra} ${target.dec}`,
          fov: target.fov,
          cooFrame: "ICRS",
          projection: "SIN",
          log: false, // no usage ping to CDS: the map must work without internet
          hipsList: [survey],
          showLayersControl: false,
          showSimbadPointerControl: false,
          showShareControl: false,
          showContextMenu: false,
          showFullscreenControl: true,
          showFrame: false, // the frame is ICRS; its unlabelled <select> fails axe
          showCooLocation: false, // ditto the location box (unnamed copy button, low contrast)
          showCooGrid: false,
          showReticle: false,
        });
        aladin.current = al;
        // Aladin's own widgets: give its images and controls text alternatives (axe).
        const label = () => {
          div.current?.querySelectorAll("img:not([alt])").forEach((img) => img.setAttribute("alt", ""));
          div.current?.querySelectorAll("button, select, input").forEach((el) => {
            if (!el.getAttribute("aria-label") && !el.textContent?.trim()) el.setAttribute("aria-label", el.getAttribute("title") || "Sky viewer control");
          });
        };
        label();
        const watcher = new MutationObserver(label);
        watcher.observe(div.current, { childList: true, subtree: true });
        cleanup.push(() => watcher.disconnect());
        const det = A.catalog({ name: "Detections", color: "#f59e0b", sourceSize: 12, shape: "circle" });
        const obj = A.catalog({ name: "Objects", color: "#22d3ee", sourceSize: 18, shape: "square" });
        const foot = A.graphicOverlay({ name: "Footprints", color: "#a78bfa", lineWidth: 2 });
        al.addOverlay(foot);
        al.addCatalog(det);
        al.addCatalog(obj);
        layers.current = { det, obj, foot };
        // Several markers may sit under the click (an object and its detections): prefer the object.
        let pending: SkyPoint | null = null;
        al.on("objectClicked", (src: Any) => {
          const p: SkyPoint | undefined = src?.data?.point;
          if (!p) return;
          if (p.kind === "object") { pending = null; router.push(pointHref(p)); return; }
          if (pending === null) {
            pending = p;
            setTimeout(() => { if (pending) router.push(pointHref(pending)); pending = null; }, 0);
          }
        });
        (window as Any).astridAladin = al; // the tests read marker positions through world2pix
        setState("ready");
      } catch (e) {
        setError(e instanceof Error ? e.message : String(e));
        setState("failed");
      }
    })();
    return () => { cancelled = true; cleanup.forEach((f) => f()); };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  // Survey switch.
  useEffect(() => {
    if (state === "ready" && aladin.current) aladin.current.setImageSurvey(survey);
  }, [survey, state]);

  // Markers and polygons.
  const [drawn, setDrawn] = useState({ detections: 0, objects: 0, footprints: 0 });
  useEffect(() => {
    if (state !== "ready") return;
    void (async () => {
      const A = (await import("aladin-lite")).default;
      const { det, obj, foot } = layers.current;
      det.removeAll(); obj.removeAll(); foot.removeAll();
      const dets = show.detections ? points.filter((p) => p.kind === "detection") : [];
      const objs = show.objects ? points.filter((p) => p.kind === "object") : [];
      det.addSources(dets.map((p) => A.source(p.ra, p.dec, { point: p, name: `detection ${p.id}` })));
      obj.addSources(objs.map((p) => A.source(p.ra, p.dec, { point: p, name: `object ${p.id}` })));
      let nFoot = 0;
      if (show.footprints) {
        for (const f of footprints) {
          const poly = footprintPolygon(f.corners);
          if (poly.length) { foot.add(A.polygon(poly, { name: `observation ${f.id}` })); nFoot += 1; }
        }
      }
      setDrawn({ detections: dets.length, objects: objs.length, footprints: nFoot });
    })();
  }, [state, points, footprints, show]);

  return (
    <div>
      <div ref={div} data-testid="skymap" data-state={state} data-detections={drawn.detections}
        data-objects={drawn.objects} data-footprints={drawn.footprints}
        role="region" aria-label="Sky map (Aladin Lite); the objects are also listed below"
        className="h-[65vh] min-h-[360px] w-full overflow-hidden rounded-lg border border-slate-200 dark:border-slate-800" />
      {error && <p role="alert" className="mt-2 text-sm text-red-700 dark:text-red-300">The sky viewer could not start: {error}</p>}
    </div>
  );
}
