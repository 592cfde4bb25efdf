"""The streaks the streak test finds among the real ZTF alerts, as a figure.

    python benchmarks/streak_groups_figure.py [--alerts ../shared/data/ztf_alerts_train]

Prints every flagged alert (difference image, members, false alarms, drb, rb, magnitude)
and draws the difference stamps of up to four members per streak, each on its own robust
scale, into ``docs/images/streak_groups.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from astrid.model.alert_streaks import alert_streaks
from astrid.model.real_alerts import alert_night
from astrid.model.ztf import iter_ztf_alerts, prepare_alert

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=Path, default=ROOT.parent / "shared/data/ztf_alerts_train")
    ap.add_argument("--out", type=Path, default=ROOT / "docs/images/streak_groups.png")
    args = ap.parse_args()
    alerts = list(iter_ztf_alerts([args.alerts]))
    streaks = alert_streaks(alerts, [prepare_alert(a)[0] for a in alerts])
    keys = sorted({s.key for s in streaks if s is not None})
    print(f"{len(alerts)} alerts, {sum(s is not None for s in streaks)} on {len(keys)} streaks")
    print("streak                 night    objectId       drb    rb   mag  false alarms")
    for a, s in zip(alerts, streaks, strict=True):
        if s is not None:
            drb = float("nan") if a.drb is None else a.drb
            print(
                f"{s.key:<22} {alert_night(a)} {a.object_id} {drb:5.2f} {a.rb or 0:5.2f} "
                f"{a.candidate.get('magpsf', float('nan')):5.2f} {s.false_alarms:9.1g}"
            )
    if not keys:
        return
    fig, axes = plt.subplots(len(keys), 4, figsize=(8, 2.2 * len(keys)), squeeze=False)
    for r, key in enumerate(keys):
        members = [a for a, s in zip(alerts, streaks, strict=True) if s and s.key == key][:4]
        for c in range(4):
            ax = axes[r, c]
            ax.axis("off")
            if c >= len(members) or members[c].difference is None:
                continue
            a = members[c]
            d = np.asarray(a.difference)
            med = np.nanmedian(d)
            sig = 1.4826 * np.nanmedian(np.abs(d - med)) or 1.0
            ax.imshow((d - med) / sig, origin="lower", cmap="gray", vmin=-3, vmax=10)
            drb = "n/a" if a.drb is None else f"{a.drb:.2f}"
            ax.set_title(f"{key}\n{a.object_id} drb {drb}", fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
