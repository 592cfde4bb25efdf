"""Energy and carbon of a piece of work: codecarbon offline, or a stated CPU-time estimate.

:class:`EnergyMeter` is a context manager around training or scoring. With codecarbon
installed (the ``ml`` extra) it runs codecarbon's :class:`OfflineEmissionsTracker` (no
network: the carbon intensity comes from the country's grid mix in codecarbon's tables, and
CPU power from RAPL where the kernel exposes it, else codecarbon's TDP model); when a CUDA
GPU is present codecarbon also reads its power through NVML. Without codecarbon it
*estimates*: ``kWh = CPU seconds of this process × (TDP / cores) / 3.6e6`` and
``kg CO2eq = kWh × carbon intensity``, and says so (``energy_method = estimate``).

Figures (:attr:`EnergyMeter.result`): ``energy_kwh``, ``emissions_kg_co2eq``,
``cpu_seconds``, ``wall_seconds`` and ``energy_method`` (``codecarbon`` or ``estimate``);
:func:`per_thousand` scales them to 1,000 scored candidates.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["EnergyMeter", "EnergySettings", "per_thousand"]


@dataclass(frozen=True)
class EnergySettings:
    """How energy is measured: ``enabled``; codecarbon's ``country_iso_code``; for the
    estimate without codecarbon, the CPU package ``cpu_tdp_w`` (W, shared by its
    ``os.cpu_count()`` cores) and the grid's ``carbon_g_per_kwh`` (g CO2eq per kWh)."""

    enabled: bool = True
    country_iso_code: str = "FRA"
    cpu_tdp_w: float = 65.0
    carbon_g_per_kwh: float = 475.0
    use_codecarbon: bool = True


class EnergyMeter:
    """Measure the energy of the work done inside ``with EnergyMeter(settings) as m:``."""

    def __init__(self, settings: EnergySettings | None = None) -> None:
        self.settings = settings or EnergySettings()
        self.result: dict[str, Any] = {}
        self._tracker: Any = None

    def __enter__(self) -> EnergyMeter:
        self._cpu0, self._wall0 = time.process_time(), time.perf_counter()
        if self.settings.enabled and self.settings.use_codecarbon:
            try:
                from codecarbon import OfflineEmissionsTracker

                logging.getLogger("codecarbon").setLevel(logging.ERROR)
                self._tracker = OfflineEmissionsTracker(
                    country_iso_code=self.settings.country_iso_code,
                    log_level="error",
                    save_to_file=False,
                    measure_power_secs=1,
                )
                self._tracker.start()
            except Exception:  # codecarbon missing or unable to start: estimate instead
                self._tracker = None
        return self

    def __exit__(self, *exc: object) -> None:
        cpu = time.process_time() - self._cpu0
        wall = time.perf_counter() - self._wall0
        self.result = {"cpu_seconds": cpu, "wall_seconds": wall}
        if not self.settings.enabled:
            return
        if self._tracker is not None:
            try:
                kg = float(self._tracker.stop() or 0.0)
                data = self._tracker.final_emissions_data
                self.result.update(
                    energy_kwh=float(data.energy_consumed),
                    emissions_kg_co2eq=kg,
                    energy_method="codecarbon",
                )
                return
            except Exception:  # a tracker that failed to stop: fall back to the estimate
                pass
        kwh = cpu * self.settings.cpu_tdp_w / max(1, os.cpu_count() or 1) / 3.6e6
        self.result.update(
            energy_kwh=kwh,
            emissions_kg_co2eq=kwh * self.settings.carbon_g_per_kwh / 1000.0,
            energy_method="estimate",
        )

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """The numeric figures, keys prefixed (for MLflow ``log_metrics``)."""
        return {
            f"{prefix}{k}": float(v)
            for k, v in self.result.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }


def per_thousand(result: dict[str, Any], n: int) -> dict[str, float]:
    """``energy_kwh_per_1000`` and ``emissions_kg_co2eq_per_1000`` for ``n`` items scored."""
    if n <= 0 or "energy_kwh" not in result:
        return {}
    return {
        "energy_kwh_per_1000": float(result["energy_kwh"]) * 1000.0 / n,
        "emissions_kg_co2eq_per_1000": float(result["emissions_kg_co2eq"]) * 1000.0 / n,
    }
