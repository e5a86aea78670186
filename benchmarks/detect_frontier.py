"""Where detection stands against what the grid allows: recall and precision over the grid's
cells (tuning seeds) as the threshold moves, for the detector and for an oracle.

The detector's flag decision (`is_candidate` and the alert score at a threshold) is replayed
from its signals, so a threshold sweep costs one detection per cell. The oracle knows, with
look-ahead, each client's mean and SD of the total over the sessions outside their rupture
(the truth says where it is) and flags a session whose total, or whose mean with the previous
session, falls that many SDs below the mean; it uses the total only (no parts). Both are scored
as `pipelines.detect.evaluate` scores flags (recall at onset or the next session; precision of
flags inside the active window plus one, chronically low clients aside), without the episodes'
ongoing rows. docs/detection.md quotes the table.

    .venv/bin/python benchmarks/detect_frontier.py [--seeds 101 102]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.detect.grid import TUNING_SEEDS, grid_cells, has_target, load_world  # noqa: E402
from pipelines.detect.ruptures import RELATIONS, build_relations, drop_relations  # noqa: E402

KEY = ["cell", "clinic_id", "client_id"]


def signals(seeds: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every session's alert score and decision, and the truth, for every cell."""
    sigs, truths = [], []
    for world in grid_cells():
        conn, truth = load_world(world, seeds)
        try:
            build_relations(conn, relations=RELATIONS[: RELATIONS.index("rupture_signals") + 1])
            sig = conn.execute(
                "select m.clinic_id, m.client_id, s.session_number, s.n_prior, s.total, "
                "s.is_candidate, s.alert_score, s.is_flag from detect_rupture_signals as s "
                "inner join (select distinct clinic_id, client_id, "
                "hash(clinic_id, client_id, '', instrument) as k from measurements) as m "
                "on s.series_key = m.k"
            ).df()
            drop_relations(conn)
        finally:
            conn.close()
        sigs.append(sig.assign(cell=world.name))
        truths.append(truth.assign(cell=world.name, target=has_target(world)))
    return pd.concat(sigs, ignore_index=True), pd.concat(truths, ignore_index=True)


def score(
    s: pd.DataFrame, ruptures: pd.DataFrame, flag: pd.Series
) -> tuple[float, float, str, str]:
    """Mean recall and precision over the cells with a target, and the worst cell of each."""
    s = s.assign(f=flag.to_numpy())
    hit = s[s["f"] & s["ontime"]][KEY].drop_duplicates().assign(hit=True)
    r = ruptures.merge(hit, on=KEY, how="left")
    recall = r.assign(hit=r["hit"].eq(True)).groupby("cell")["hit"].mean()
    precision = s[s["f"] & ~s["chronic"]].groupby("cell")["inside"].mean()
    target = ruptures.groupby("cell")["target"].first()
    recall, precision = recall[target], precision[target]
    return (
        float(recall.mean()),
        float(precision.mean()),
        f"{recall.min():.3f} ({recall.idxmin()})",
        f"{precision.min():.3f} ({precision.idxmin()})",
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(TUNING_SEEDS))
    args = ap.parse_args()
    s, truth = signals(args.seeds)
    ruptures = truth[truth["kind"] == "rupture"][
        [*KEY, "onset_session", "repaired_session", "last_session", "target"]
    ].copy()
    end = ruptures["repaired_session"].fillna(ruptures["last_session"]).astype(float) + 1
    ruptures["window_end"] = end
    chronic = truth[truth["kind"] == "chronic_low"][KEY].drop_duplicates().assign(chronic=True)
    s = s.merge(ruptures[[*KEY, "onset_session", "window_end"]], on=KEY, how="left")
    s = s.merge(chronic, on=KEY, how="left")
    s["chronic"] = s["chronic"].eq(True)
    rel = (s["session_number"] - s["onset_session"]).astype(float)
    s["ontime"] = rel.between(0, 1)
    s["inside"] = (rel >= 0) & (s["session_number"] <= s["window_end"])
    # the oracle: each client's mean and SD over the sessions away from their rupture
    near = (rel >= 0) & (s["session_number"] <= s["window_end"] + 1)
    clean = s[~near].groupby(KEY)["total"].agg(["mean", "std"]).reset_index()
    s = s.sort_values([*KEY, "session_number"]).merge(clean, on=KEY, how="left")
    z = (s["mean"] - s["total"]) / s["std"]
    pair = (z + z.groupby([s[k] for k in KEY]).shift(1)) / np.sqrt(2)
    oracle_score = np.fmax(z, pair.fillna(-99))
    lines = [
        "| method | threshold | mean recall | mean precision | worst recall | worst precision |",
        "|---|---|---|---|---|---|",
    ]
    for t in (2.05, 2.2, 2.25, 2.35, 2.5, 2.65):
        flag = s["is_candidate"] & (s["alert_score"] >= t)
        r, p, wr, wp = score(s, ruptures, flag)
        lines.append(f"| detector | {t} | {r:.3f} | {p:.3f} | {wr} | {wp} |")
    for t in (1.8, 2.0, 2.2, 2.35, 2.5):
        flag = (s["n_prior"] >= 2) & (oracle_score >= t)
        r, p, wr, wp = score(s, ruptures, flag)
        lines.append(
            f"| oracle (true mean and SD, total only) | {t} | {r:.3f} | {p:.3f} | {wr} | {wp} |"
        )
    print(f"seeds {args.seeds}, cells with a target\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
