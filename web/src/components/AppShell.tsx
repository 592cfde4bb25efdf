"use client";
import Link from "next/link";
import { usePathname, useRouter } from "next/navigation";
import { useEffect, useState } from "react";
import { ApiBanner } from "@/components/ApiBanner";
import { atLeast, logout } from "@/lib/api";
import { useSession } from "@/lib/useSession";

const NAV = [
  ["/", "Overview"],
  ["/scan", "Scan"],
  ["/catalog", "Catalog"],
  ["/timeline", "Timeline"],
  ["/sky", "Sky map"],
  ["/sky3d", "3D sky"],
  ["/models", "Models"],
  ["/workers", "Workers"],
  ["/diagnostics", "Diagnostics"],
] as const;

function ThemeToggle() {
  const [dark, setDark] = useState(false);
  useEffect(() => setDark(document.documentElement.classList.contains("dark")), []);
  const flip = () => {
    const next = !dark;
    document.documentElement.classList.toggle("dark", next);
    localStorage.setItem("astrid.theme", next ? "dark" : "light");
    setDark(next);
  };
  return (
    <button type="button" onClick={flip} className="rounded px-2 py-1 text-sm hover:bg-slate-200 dark:hover:bg-slate-800" aria-label={dark ? "Switch to light theme" : "Switch to dark theme"}>
      {dark ? "☀ Light" : "☾ Dark"}
    </button>
  );
}

/** Header, navigation and the login gate of every page but /login. */
export function AppShell({ children }: { children: React.ReactNode }) {
  const session = useSession();
  const path = usePathname();
  const router = useRouter();
  const onLogin = path === "/login";
  useEffect(() => {
    if (session === null && !onLogin) router.replace(`/login?next=${encodeURIComponent(path)}`);
  }, [session, onLogin, path, router]);

  return (
    <>
      <a href="#main" className="sr-only focus:not-sr-only focus:absolute focus:left-2 focus:top-2 focus:z-50 focus:bg-white focus:p-2 dark:focus:bg-slate-900">
        Skip to content
      </a>
      <header className="border-b border-slate-200 bg-white dark:border-slate-800 dark:bg-slate-900">
        <div className="mx-auto flex max-w-7xl flex-wrap items-center gap-x-4 gap-y-1 px-3 py-2">
          <Link href="/" className="font-semibold tracking-tight">AstrID</Link>
          {!onLogin && session && (
            <nav aria-label="Main" className="flex flex-wrap gap-1 text-sm">
              {[...NAV, ...(atLeast(session.role, "admin") ? ([["/users", "Users"]] as const) : [])].map(([href, label]) => (
                <Link key={href} href={href} aria-current={path === href ? "page" : undefined}
                  className={`rounded px-2 py-1 hover:bg-slate-200 dark:hover:bg-slate-800 ${path === href ? "bg-slate-200 font-medium dark:bg-slate-800" : ""}`}>
                  {label}
                </Link>
              ))}
            </nav>
          )}
          <div className="ml-auto flex items-center gap-2 text-sm">
            <ThemeToggle />
            {session && (
              <>
                <span data-testid="whoami" className="text-slate-600 dark:text-slate-300">
                  {session.username} · {session.role}
                </span>
                <button type="button" className="rounded px-2 py-1 hover:bg-slate-200 dark:hover:bg-slate-800"
                  onClick={async () => { await logout(); router.replace("/login"); }}>
                  Log out
                </button>
              </>
            )}
          </div>
        </div>
      </header>
      {!onLogin && <ApiBanner />}
      <main id="main" className="mx-auto max-w-7xl px-3 py-4">
        {onLogin || session ? children : <p className="text-sm text-slate-600 dark:text-slate-300">Loading…</p>}
      </main>
    </>
  );
}
