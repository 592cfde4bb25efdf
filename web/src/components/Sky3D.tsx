"use client";
/**
 * The 3D sky (three.js, imported on first use): a celestial sphere seen from its centre,
 * detections and objects as points at their (ra, dec), a faint RA/Dec grid, orbit controls
 * (drag to look around, wheel to zoom) and click → the point's page. `data-points` on the
 * container says how many points were drawn.
 */
import { useRouter } from "next/navigation";
import { useEffect, useRef, useState } from "react";
import { pointHref, radecToXyz, type SkyPoint } from "@/lib/sky";

const COLORS = { detection: 0xf59e0b, object: 0x22d3ee } as const;

export function Sky3D({ points }: { points: SkyPoint[] }) {
  const div = useRef<HTMLDivElement>(null);
  const [state, setState] = useState<"loading" | "ready" | "failed">("loading");
  const [drawn, setDrawn] = useState(0);
  const [hover, setHover] = useState<SkyPoint | null>(null);
  const router = useRouter();

  useEffect(() => {
    let stop = () => {};
    let cancelled = false;
    void (async () => {
      try {
        const THREE = await import("three");
        const { OrbitControls } = await import("three/examples/jsm/controls/OrbitControls.js");
        const host = div.current;
        if (cancelled || !host) return;
        const width = host.clientWidth || 800;
        const height = host.clientHeight || 500;
        const renderer = new THREE.WebGLRenderer({ antialias: true });
        renderer.setPixelRatio(Math.min(2, window.devicePixelRatio || 1));
        renderer.setSize(width, height);
        host.appendChild(renderer.domElement);
        renderer.domElement.setAttribute("aria-hidden", "true");
        const scene = new THREE.Scene();
        scene.background = new THREE.Color(0x020617);
        const camera = new THREE.PerspectiveCamera(60, width / height, 0.001, 10);
        camera.position.set(0.001, 0, 0); // just off the centre: orbiting it turns the view
        const controls = new OrbitControls(camera, renderer.domElement);
        controls.target.set(0, 0, 0);
        controls.enablePan = false;
        controls.rotateSpeed = -0.4; // drag the sky, not the camera
        controls.minDistance = 0.0005;
        controls.maxDistance = 0.9;

        // RA/Dec grid: parallels every 30°, meridians every 2h.
        const grid = new THREE.LineBasicMaterial({ color: 0x334155 });
        for (let dec = -60; dec <= 60; dec += 30) {
          const pts = Array.from({ length: 73 }, (_, i) => new THREE.Vector3(...radecToXyz(i * 5, dec, 1.5)));
          scene.add(new THREE.Line(new THREE.BufferGeometry().setFromPoints(pts), grid));
        }
        for (let ra = 0; ra < 360; ra += 30) {
          const pts = Array.from({ length: 37 }, (_, i) => new THREE.Vector3(...radecToXyz(ra, -90 + i * 5, 1.5)));
          scene.add(new THREE.Line(new THREE.BufferGeometry().setFromPoints(pts), grid));
        }

        const positions = new Float32Array(points.length * 3);
        const colors = new Float32Array(points.length * 3);
        const c = new THREE.Color();
        points.forEach((p, i) => {
          positions.set(radecToXyz(p.ra, p.dec, 1), 3 * i);
          c.setHex(COLORS[p.kind]);
          colors.set([c.r, c.g, c.b], 3 * i);
        });
        const geometry = new THREE.BufferGeometry();
        geometry.setAttribute("position", new THREE.BufferAttribute(positions, 3));
        geometry.setAttribute("color", new THREE.BufferAttribute(colors, 3));
        const cloud = new THREE.Points(geometry, new THREE.PointsMaterial({ size: 6, sizeAttenuation: false, vertexColors: true }));
        scene.add(cloud);

        // Look at the newest object (else the first point) to start with.
        const first = points.find((p) => p.kind === "object") ?? points[0];
        if (first) {
          const [x, y, z] = radecToXyz(first.ra, first.dec, 0.001);
          camera.position.set(-x, -y, -z);
          controls.update();
        }

        const ray = new THREE.Raycaster();
        ray.params.Points = { threshold: 0.01 };
        const mouse = new THREE.Vector2();
        const pick = (ev: MouseEvent): SkyPoint | null => {
          const r = renderer.domElement.getBoundingClientRect();
          mouse.set(((ev.clientX - r.left) / r.width) * 2 - 1, -((ev.clientY - r.top) / r.height) * 2 + 1);
          ray.setFromCamera(mouse, camera);
          const hit = ray.intersectObject(cloud)[0];
          return hit && hit.index !== undefined ? points[hit.index] : null;
        };
        let downAt: [number, number] | null = null;
        const onDown = (ev: MouseEvent) => { downAt = [ev.clientX, ev.clientY]; };
        const onUp = (ev: MouseEvent) => {
          if (downAt && Math.hypot(ev.clientX - downAt[0], ev.clientY - downAt[1]) < 4) {
            const p = pick(ev);
            if (p) router.push(pointHref(p));
          }
          downAt = null;
        };
        const onMove = (ev: MouseEvent) => setHover(pick(ev));
        renderer.domElement.addEventListener("pointerdown", onDown);
        renderer.domElement.addEventListener("pointerup", onUp);
        renderer.domElement.addEventListener("pointermove", onMove);
        const onResize = () => {
          const w = host.clientWidth || width;
          const h = host.clientHeight || height;
          renderer.setSize(w, h);
          camera.aspect = w / h;
          camera.updateProjectionMatrix();
        };
        window.addEventListener("resize", onResize);
        let frame = 0;
        const loop = () => { controls.update(); renderer.render(scene, camera); frame = requestAnimationFrame(loop); };
        loop();
        // The tests project a point to the screen through this.
        (window as unknown as { astridSky3d: unknown }).astridSky3d = {
          screenOf(i: number): [number, number] {
            const v = new THREE.Vector3(...radecToXyz(points[i].ra, points[i].dec, 1)).project(camera);
            const r = renderer.domElement.getBoundingClientRect();
            return [r.left + ((v.x + 1) / 2) * r.width, r.top + ((1 - v.y) / 2) * r.height];
          },
        };
        setDrawn(points.length);
        setState("ready");
        stop = () => {
          cancelAnimationFrame(frame);
          window.removeEventListener("resize", onResize);
          controls.dispose();
          geometry.dispose();
          renderer.dispose();
          renderer.domElement.remove();
        };
      } catch (e) {
        console.error(e);
        setState("failed");
      }
    })();
    return () => { cancelled = true; stop(); };
  }, [points, router]);

  return (
    <div>
      <div ref={div} data-testid="sky3d" data-state={state} data-points={drawn}
        className="h-[65vh] min-h-[360px] w-full overflow-hidden rounded-lg border border-slate-200 dark:border-slate-800" />
      <p className="mt-1 text-sm" aria-live="polite">
        {state === "failed" ? "WebGL is not available in this browser." : hover ? `${hover.kind} ${hover.id} at ${hover.ra.toFixed(4)}, ${hover.dec.toFixed(4)} (click to open)` : "Drag to look around, wheel to zoom, click a point to open it."}
      </p>
    </div>
  );
}
