"""The distinct-value engine: GX judges each distinct value once; the verdicts it gave are kept in
an explicit `Verdicts` object (see docs/validation.md).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.validation.frames import combinations, representatives, value_codes, value_keys
from pipelines.validation.planner import RuleGroup, condition_rows, plan_groups, without_condition

# Result keys that carry only counts; everything else (values, index lists) is dropped before
# Data Docs are rendered.
SAFE_RESULT_KEYS = frozenset(
    {
        "element_count",
        "unexpected_count",
        "unexpected_percent",
        "unexpected_percent_total",
        "unexpected_percent_nonmissing",
        "missing_count",
        "missing_percent",
    }
)


class ValidationEngineError(RuntimeError):
    """GX itself failed on an expectation: a pipeline fault, not a data problem."""


def _build_suite(gx: Any, suite_dict: dict[str, Any]) -> Any:
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    expectations = [
        ExpectationConfiguration(
            type=e["type"], kwargs=e["kwargs"], meta=e.get("meta", {})
        ).to_domain_obj()
        for e in suite_dict["expectations"]
    ]
    return gx.ExpectationSuite(
        name=suite_dict["name"], expectations=expectations, meta=suite_dict.get("meta", {})
    )


_RESULT_FORMAT = {
    "result_format": "COMPLETE",
    "partial_unexpected_count": 0,
    "return_unexpected_index_query": False,
}


# Verdicts remembered per rule set and column before that memory is cleared (bounds memory).
_MAX_REMEMBERED = 2_000_000


@dataclass
class _Memory:
    """Verdicts GX gave for the rules on one column: one row per judged value, one bool per
    rule, and one sanitized GX result per rule (the Data Docs template)."""

    index: dict[Any, int]  # value key -> row of ``failed``
    failed: np.ndarray  # (values, rules)
    templates: list[Any]


class _Engine:
    """One GX context, reused for every frame validated with one ``Verdicts``."""

    def __init__(self) -> None:
        import great_expectations as gx

        self.gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = {"globally": False}  # type: ignore[assignment]
        asset = self.context.data_sources.add_pandas("clinic_export").add_dataframe_asset("frames")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("frame")
        self.suites: dict[str, Any] = {}

    def run(
        self, frame: pd.DataFrame, expectations: list[dict[str, Any]], parameters: dict[str, Any]
    ) -> list[Any]:
        """GX results for ``expectations`` on ``frame``, in the order given."""
        text = json.dumps(expectations, sort_keys=True, default=str)
        suite = self.suites.get(text)
        if suite is None:
            name = f"group_{hashlib.sha256(text.encode()).hexdigest()[:12]}"
            suite = _build_suite(self.gx, {"name": name, "expectations": expectations})
            self.suites[text] = suite
        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": frame})
        results = batch.validate(
            suite, expectation_parameters=parameters, result_format=_RESULT_FORMAT
        ).results
        return _in_suite_order(results, expectations)


@functools.cache
def _process_engine() -> _Engine:
    """The GX context of this process, shared by every `Verdicts` (creating one is costly; it
    holds no verdicts, only GX's data source and the suites built for the rule groups)."""
    return _Engine()


def _in_suite_order(results: list[Any], expectations: list[dict[str, Any]]) -> list[Any]:
    by_rule = {_result_key(r): r for r in results}
    out = []
    for e in expectations:
        r = by_rule.get(_rule_key(e["type"], e.get("meta")))
        if r is None or (r.exception_info or {}).get("raised_exception"):
            raise ValidationEngineError(
                f"GX could not evaluate the rule {e.get('meta', {}).get('reason', '?')!r}; "
                "this is a pipeline fault, not a data problem"
            )
        out.append(r)
    return out


def _rule_key(type_: str, meta: Any) -> str:
    # Type and meta identify a rule: every expectation's meta carries its own explanation
    # (kwargs are not compared because GX fills the suite parameters into its copy).
    return json.dumps([type_, dict(meta or {})], sort_keys=True, default=str)


def _result_key(result: Any) -> str:
    config = result.expectation_config
    return _rule_key(config.type, config.meta)


@dataclass(frozen=True)
class Sharing:
    """Verdicts exchanged by the ``processes`` preparing one run's files, through files in
    ``folder`` (the run's stage folder: it holds values, codes among them, and is deleted with
    the run); this process is ``rank``."""

    folder: Path
    rank: int
    processes: int


class Verdicts:
    """What GX decided, remembered for the frames validated with this object.

    A verdict depends only on the value, the rule (its condition included), the run's
    parameters and the column's type, which the memory key holds; so one object serves every
    file of a run and every part of a file, and only values not judged yet go to GX. With
    ``sharing``, each process of a run starts with a different share of the rule groups,
    publishes what GX told it, and reads what the others published before asking GX itself:
    a peer's verdict is the one GX would give here."""

    def __init__(self, sharing: Sharing | None = None) -> None:
        self.sharing = sharing
        self.memory: dict[str, _Memory] = {}
        self._engine: _Engine | None = None
        self._seen: dict[Path, int] = {}  # peer file -> the modification time last read
        if sharing is not None:
            sharing.folder.mkdir(parents=True, exist_ok=True)

    @property
    def engine(self) -> _Engine:
        if self._engine is None:
            self._engine = _process_engine()
        return self._engine

    def run(
        self, frame: pd.DataFrame, expectations: list[dict[str, Any]], parameters: dict[str, Any]
    ) -> list[Any]:
        """GX results for ``expectations`` on ``frame``, in the order given."""
        return self.engine.run(frame, expectations, parameters)

    def in_turn(self, groups: list[RuleGroup]) -> list[RuleGroup]:
        """The groups, starting at this process's share when verdicts are shared."""
        share = self.sharing
        if share is None or share.processes < 2:
            return groups
        k = len(groups) * share.rank // share.processes
        return groups[k:] + groups[:k]

    def _path(self, memo: str, rank: int) -> Path:
        assert self.sharing is not None
        name = f"{hashlib.sha256(memo.encode()).hexdigest()[:32]}.{rank}.pickle"
        return self.sharing.folder / name

    def read_peers(self, memo: str, n_rules: int) -> _Memory | None:
        """The memory of ``memo`` with what the other processes published for it added."""
        mem = self.memory.get(memo)
        share = self.sharing
        if share is None:
            return mem
        for rank in range(share.processes):
            if rank == share.rank:
                continue
            path = self._path(memo, rank)
            try:
                stamp = path.stat().st_mtime_ns
                if self._seen.get(path) == stamp:
                    continue
                peer: _Memory = pickle.loads(path.read_bytes())  # noqa: S301 - our own run's files
            except (OSError, EOFError, pickle.UnpicklingError):
                continue  # not published yet
            self._seen[path] = stamp
            if mem is None:
                mem = _Memory({}, np.zeros((0, n_rules), dtype=bool), peer.templates)
            missing = [(k, i) for k, i in peer.index.items() if k not in mem.index]
            if missing:
                start = len(mem.failed)
                mem.index.update({k: start + n for n, (k, _) in enumerate(missing)})
                mem.failed = np.vstack([mem.failed, peer.failed[[i for _, i in missing]]])
        if mem is not None:
            self.memory[memo] = mem
        return mem

    def remember(self, memo: str, mem: _Memory) -> None:
        self.memory[memo] = mem
        if self.sharing is None:
            return
        path = self._path(memo, self.sharing.rank)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(mem, protocol=pickle.HIGHEST_PROTOCOL))
        tmp.replace(path)  # a reader sees the old or the new file, never half of one


def _percent(part: int, whole: int) -> float | None:
    return part / whole * 100 if whole else None  # the same float arithmetic as GX


def _counted(template: Any, element: int, missing: int, unexpected: int) -> Any:
    """A copy of a (sanitized) GX result with the counts of the whole frame, in GX's terms:
    ``unexpected_percent`` is relative to the non-missing rows where GX reports missing ones."""
    has_missing = "missing_count" in (template.result or {})
    nonnull = element - missing if has_missing else element
    counts = {
        "element_count": element,
        "unexpected_count": unexpected,
        "unexpected_percent": _percent(unexpected, nonnull),
        "missing_count": missing,
        "missing_percent": _percent(missing, element),
        "unexpected_percent_total": _percent(unexpected, element),
        "unexpected_percent_nonmissing": _percent(unexpected, nonnull),
    }
    out = copy.copy(template)
    out.result = {k: counts[k] for k in (template.result or {}) if k in counts}
    out.success = unexpected == 0
    return out


def _sanitized_copy(result: Any, rule: dict[str, Any] | None = None) -> Any:
    """A GX result with only its counts; with ``rule``, labelled with that rule as reviewed
    (its row condition included), for the Data Docs page."""
    out = copy.copy(result)
    out.result = {k: v for k, v in (result.result or {}).items() if k in SAFE_RESULT_KEYS}
    if rule is not None and "row_condition" in rule["kwargs"]:
        from great_expectations.expectations.expectation_configuration import (
            ExpectationConfiguration,
        )

        config = result.expectation_config
        out.expectation_config = ExpectationConfiguration(
            type=config.type,
            kwargs={**config.kwargs, "row_condition": rule["kwargs"]["row_condition"]},
            meta=config.meta,
        )
    return out


def _memo_key(
    kind: str,
    expectations: list[dict[str, Any]],
    parameters: dict[str, Any],
    frame: pd.DataFrame,
    columns: tuple[str, ...],
    condition: str | None = None,
) -> str:
    return json.dumps(
        [
            kind,
            expectations,
            condition,
            {k: str(v) for k, v in sorted(parameters.items())},
            [(c, str(frame[c].dtype)) for c in columns],
        ],
        sort_keys=True,
        default=str,
    )


def _index_list(result: Any) -> np.ndarray:
    return np.asarray((result.result or {}).get("unexpected_index_list") or [], dtype="int64")


@dataclass
class _Column:
    """One column of a distinct group: its values inside the condition and what is known."""

    rules: list[int]  # positions in the group's rules
    codes: np.ndarray  # value number (+ 1) of every row inside the condition
    present: np.ndarray  # the value numbers (+ 1) found there
    weight: np.ndarray  # rows per value number (+ 1)
    rep: np.ndarray  # a row per value number (+ 1)
    keys: list[Any]  # a key per present value
    memo: str
    failed: np.ndarray  # (present values, rules)
    new: np.ndarray  # positions in ``present`` GX has not judged


def _judge_distinct(
    verdicts: Verdicts,
    group: RuleGroup,
    rules: list[dict[str, Any]],
    frame: pd.DataFrame,
    parameters: dict[str, Any],
    factorized: dict[str, tuple[np.ndarray, int]],
) -> tuple[list[np.ndarray], list[Any]]:
    """Failing rows (index labels of ``frame``) and a whole-frame result per rule of the group."""
    cond = None if group.condition is None else json.loads(group.condition)
    inside = condition_rows(cond, frame, factorized)
    given = [without_condition(e) for e in rules]
    columns: dict[str, _Column] = {}
    for col in group.columns:
        at = [j for j, e in enumerate(rules) if e["kwargs"]["column"] == col]
        all_codes, width = value_codes(frame, col, factorized)
        codes = all_codes[inside] + 1
        weight = np.bincount(codes, minlength=width)
        present = np.flatnonzero(weight)
        rep = representatives(all_codes, width, inside)
        keys = value_keys(frame[col].iloc[rep[present]])
        memo = _memo_key(
            "distinct", [given[j] for j in at], parameters, frame, (col,), group.condition
        )
        failed = np.zeros((len(present), len(at)), dtype=bool)
        known = _recall(verdicts.memory.get(memo), keys, failed)
        if not known.all():
            known = _recall(verdicts.read_peers(memo, len(at)), keys, failed)
        columns[col] = _Column(
            at, codes, present, weight, rep, keys, memo, failed, np.flatnonzero(~known)
        )
    # GX is asked only about the columns with values it has not judged (or no Data Docs
    # template yet), in one run: each such column holds its values not judged yet, repeated
    # to the longest column's length (a repeat's verdict is its value's and is not read)
    asked = {col: c for col, c in columns.items() if len(c.new) or c.memo not in verdicts.memory}
    if asked:
        length = max(len(c.new) for c in asked.values())
        data = {}
        for col, c in asked.items():
            chosen = c.present[c.new] if len(c.new) else c.present[:1]
            data[col] = frame[col].iloc[c.rep[np.resize(chosen, length)]].reset_index(drop=True)
        positions = [j for c in asked.values() for j in c.rules]
        answers = verdicts.run(pd.DataFrame(data), [given[j] for j in positions], parameters)
        result_of = dict(zip(positions, answers, strict=True))
        for c in asked.values():
            for jj, j in enumerate(c.rules):
                unexpected = _index_list(result_of[j])
                unexpected = unexpected[unexpected < len(c.new)]
                c.failed[c.new[unexpected], jj] = True
            templates = [_sanitized_copy(result_of[j], rules[j]) for j in c.rules]
            mem = verdicts.memory.get(c.memo)
            if mem is None or len(mem.index) + len(c.new) > _MAX_REMEMBERED:
                mem = _Memory({}, np.zeros((0, len(c.rules)), dtype=bool), templates)
            start = len(mem.failed)
            mem.index.update({c.keys[i]: start + n for n, i in enumerate(c.new.tolist())})
            mem.failed = np.vstack([mem.failed, c.failed[c.new]])
            mem.templates = templates
            verdicts.remember(c.memo, mem)
    labels = frame.index.to_numpy(dtype="int64")[inside]
    none = np.zeros(0, dtype="int64")
    rows: list[np.ndarray] = [none] * len(rules)
    results_out: list[Any] = [None] * len(rules)
    for c in columns.values():
        templates = verdicts.memory[c.memo].templates
        for jj, j in enumerate(c.rules):
            failing = np.zeros(len(c.weight), dtype=bool)
            failing[c.present[c.failed[:, jj]]] = True
            rows[j] = labels[failing[c.codes]] if failing.any() else none
            results_out[j] = _counted(
                templates[jj],
                len(inside),
                int(c.weight[0]),
                int(c.weight[failing].sum()),
            )
    return rows, results_out


def _recall(mem: _Memory | None, keys: list[Any], failed: np.ndarray) -> np.ndarray:
    """Fill ``failed`` with the remembered verdicts of ``keys``; which keys were remembered."""
    if mem is None:
        return np.zeros(len(keys), dtype=bool)
    found = np.fromiter((mem.index.get(k, -1) for k in keys), dtype="int64", count=len(keys))
    known = found >= 0
    failed[known] = mem.failed[found[known]]
    return known


def _judge_other(
    verdicts: Verdicts,
    group: RuleGroup,
    expectations: list[dict[str, Any]],
    frame: pd.DataFrame,
    parameters: dict[str, Any],
    factorized: dict[str, tuple[np.ndarray, int]],
) -> tuple[list[np.ndarray], list[Any]]:
    """Header, key and whole-frame rules (see the comment above ``RuleGroup``)."""
    memory = verdicts.memory
    if group.kind == "header":
        memo = _memo_key("header", expectations, parameters, frame, tuple(frame.columns))
        mem = memory.get(memo)
        if mem is None:
            results = verdicts.run(frame.iloc[:0], expectations, parameters)
            mem = _Memory({}, np.zeros((0, 0), bool), [_sanitized_copy(r) for r in results])
            memory[memo] = mem
        empty = np.zeros(0, dtype="int64")
        return [empty] * len(expectations), list(mem.templates)
    if group.kind == "key":
        cols = list(group.columns)
        all_missing = frame[cols].isna().all(axis=1).to_numpy()
        combination, n_keys = combinations(frame, group.columns, factorized)
        repeats = (np.bincount(combination, minlength=n_keys) > 1)[combination] & ~all_missing
        memo = _memo_key("key", expectations, parameters, frame, group.columns)
        mem = memory.get(memo)
        if mem is None or repeats.any():
            # GX judges every row whose key repeats; no repeat (the usual case) means no failure.
            results = verdicts.run(frame.loc[repeats, cols], expectations, parameters)
            rows = [_index_list(r) for r in results]
            mem = _Memory({}, np.zeros((0, 0), bool), [_sanitized_copy(r) for r in results])
            memory[memo] = mem
        else:
            rows = [np.zeros(0, dtype="int64")] * len(expectations)
        missing = int(all_missing.sum())
        return rows, [
            _counted(t, len(frame), missing, len(x))
            for t, x in zip(mem.templates, rows, strict=True)
        ]
    results = verdicts.run(frame, expectations, parameters)
    return [_index_list(r) for r in results], [_sanitized_copy(r) for r in results]


def judge(
    frame: pd.DataFrame,
    suite_dict: dict[str, Any],
    parameters: dict[str, Any],
    verdicts: Verdicts | None = None,
    factorized: dict[str, tuple[np.ndarray, int]] | None = None,
) -> tuple[list[np.ndarray], list[Any]]:
    """Run the suite on ``frame`` the distinct-value way; per expectation (in suite order) the
    failing rows (index labels of ``frame``) and its whole-frame GX result (counts only), as a
    whole-frame GX run gives them. ``verdicts``: what GX already decided (a fresh memory when
    None); ``factorized``: column codes of this very frame already computed."""
    verdicts = Verdicts() if verdicts is None else verdicts
    expectations = suite_dict["expectations"]
    rows: list[np.ndarray] = [np.zeros(0, dtype="int64")] * len(expectations)
    results: list[Any] = [None] * len(expectations)
    factorized = {} if factorized is None else factorized
    for group in verdicts.in_turn(plan_groups(suite_dict)):
        chosen = [expectations[i] for i in group.positions]
        judge_group = _judge_distinct if group.kind == "distinct" else _judge_other
        got_rows, got_results = judge_group(verdicts, group, chosen, frame, parameters, factorized)
        for i, r, res in zip(group.positions, got_rows, got_results, strict=True):
            rows[i], results[i] = r, res
    return rows, results


def run_full(
    frame: pd.DataFrame, suite_dict: dict[str, Any], parameters: dict[str, Any]
) -> tuple[list[np.ndarray], list[Any]]:
    """The straightforward run: the whole suite on the whole frame (the reference the distinct
    path is tested against; ``validate(strategy="full")``)."""
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}  # type: ignore[assignment]
    asset = context.data_sources.add_pandas("clinic_export").add_dataframe_asset(suite_dict["name"])
    batch = asset.add_batch_definition_whole_dataframe("whole_file").get_batch(
        batch_parameters={"dataframe": frame}
    )
    results = batch.validate(
        _build_suite(gx, suite_dict),
        expectation_parameters=parameters,
        result_format=_RESULT_FORMAT,
    ).results
    ordered = _in_suite_order(results, suite_dict["expectations"])
    return [_index_list(r) for r in ordered], [_sanitized_copy(r) for r in ordered]
