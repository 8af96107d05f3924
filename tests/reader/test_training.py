"""Reader training: a smoke run on a few dozen examples, checkpoints, resume, and refusals."""

from __future__ import annotations

import json
import lzma
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

from qa.answer import Passage
from qa.reader import TransformersReader, training
from qa.reader.training import (
    TrainConfig,
    fitted_steps,
    load_examples,
    load_training_examples,
    parse_file_spec,
    resolve_device,
    train,
)

ROOT = Path(__file__).resolve().parents[2]
FACTS = [
    ("Baykar", "Who builds the Kizilelma?", "The Kizilelma is built by Baykar in Istanbul."),
    ("Ankara", "What is the capital of Turkey?", "The capital of Turkey is Ankara, a large city."),
    ("December 2022", "When did the drone first fly?", "The drone first flew in December 2022 near Corlu."),
    ("Gen Nakatani", "Who is Japan's defense minister?", "Japan's defense minister Gen Nakatani visited Turkey."),
]


def write_squad(path: Path, copies: int = 8) -> Path:
    paragraphs = []
    for n in range(copies):
        for answer, question, context in FACTS:
            paragraphs.append(
                {"context": context, "qas": [{"id": f"{n}-{answer}", "question": question, "answers": [{"text": answer, "answer_start": context.index(answer)}]}]}
            )
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": paragraphs}]}))
    return path


def config(tmp_path: Path, base: Path, **kw: object) -> TrainConfig:
    defaults = dict(
        files=[str(write_squad(tmp_path / "train.json"))], out=str(tmp_path / "run"), base_model=str(base),
        lr=3e-3, batch_size=8, max_length=64, stride=16, negative_ratio=0.25, warmup=0.0, checkpoint_minutes=60.0, bf16=False,
    )
    defaults.update(kw)
    return TrainConfig(**defaults)  # type: ignore[arg-type]


def losses(run: Path) -> list[float]:
    return [row["loss"] for row in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in row]


def test_training_smoke_loss_falls_and_checkpoint_answers(tmp_path: Path, tiny_qa_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    final = train(config(tmp_path, tiny_qa_checkpoint, max_steps=100), progress=False)
    assert os.environ["JAX_PLATFORMS"] == "cpu"  # bm25s's JAX, if installed, keeps off the GPU
    curve = losses(tmp_path / "run")
    assert len(curve) == 4 and curve[-1] < 0.5 * curve[0], curve
    assert (final / "model.safetensors").is_file() and (final / "tokenizer.json").is_file()
    state = json.loads((final / "training.json").read_text())
    assert state["step"] == 100 and state["data"]["train.json"] == 32 and state["data"]["negatives"] > 0
    # The saved checkpoint loads by path and answers, with exact offsets into the document.
    reader = TransformersReader(str(final), threshold=0.0, quantize="none")
    doc = "Intro line. The capital of Turkey is Ankara, a large city."
    passage = Passage("t.txt", "/t.txt", "t.txt#0", 12, len(doc), doc[12:], 1.0, doc)
    answer = reader.read("What is the capital of Turkey?", [passage])
    assert answer.text == "Ankara"
    c = answer.citations[0]
    assert doc[c.answer_start : c.answer_end] == "Ankara" and c.answer_start == doc.index("Ankara")


def test_resume_continues_from_the_checkpoint(tmp_path: Path, tiny_qa_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(tmp_path, tiny_qa_checkpoint, max_steps=6, checkpoint_minutes=0.0)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    train(cfg, progress=False)
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"  # the tokenizer's threads only while preparing
    state = json.loads((tmp_path / "run" / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 6 and (tmp_path / "run" / "checkpoint" / "optimizer.safetensors").is_file()
    # Resuming reads the saved config; asking for more steps needs a new config value. A run
    # saved in bf16 resumes in fp32 where asked (a machine without native bf16): from the
    # command line, the compute settings given change the saved ones, the rest stays.
    state["config"]["max_steps"] = 9
    state["config"]["bf16"] = True
    (tmp_path / "run" / "checkpoint" / "trainer_state.json").write_text(json.dumps(state))
    cmd = [sys.executable, "-m", "qa", "train-reader", "--out", str(tmp_path / "run"), "--resume", "--no-bf16", "--lr", "0.5"]
    resumed = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "ignored: lr=0.5" in resumed.stderr  # said, not silently dropped
    final = json.loads((tmp_path / "run" / "final" / "training.json").read_text())
    assert final["step"] == 9 and final["config"]["bf16"] is False and final["config"]["lr"] == cfg.lr
    rows = [json.loads(r) for r in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert {"step": 6, "resumed_with": {"bf16": False}} in rows
    with pytest.raises(ValueError, match="nothing to resume"):
        train(config(tmp_path, tiny_qa_checkpoint, out=str(tmp_path / "empty")), resume=True, progress=False)
    with pytest.raises(ValueError, match=r"resume_with \['lr'\]: a resumed run may change only"):
        train(cfg, resume=True, progress=False, resume_with={"lr": 1.0})
    with pytest.raises(ValueError, match="resumed run only"):
        train(cfg, progress=False, resume_with={"threads": 1})


def test_max_minutes_cuts_the_run_to_its_budget_and_decays_to_zero_there(tmp_path: Path, tiny_qa_checkpoint: Path) -> None:
    # 400 steps planned; a budget of ~0 s: the speed is measured after 20 steps and the run
    # ends one step later, its learning rate at 0 on that last step (not cut mid-schedule).
    for bad in (0.0, -1.0, float("nan")):  # refused from Python as from the command line, before anything is written
        with pytest.raises(ValueError, match="max_minutes"):
            train(config(tmp_path, tiny_qa_checkpoint, out=str(tmp_path / "bad"), max_steps=400, max_minutes=bad), progress=False)
    assert not (tmp_path / "bad").exists()
    # Still warming up when cut (a 200-step warm-up planned): the rate still ends at 0.
    warm = train(config(tmp_path, tiny_qa_checkpoint, out=str(tmp_path / "warm"), max_steps=400, max_minutes=1e-6, lr=1e-3, warmup=0.5), progress=False)
    fitted = json.loads((warm / "training.json").read_text())["fitted"]
    assert fitted["total_steps"] == 21 and fitted["peak_at"] == 21 and fitted["from"] == pytest.approx(20 / 200)
    assert [json.loads(r).get("lr") for r in (tmp_path / "warm" / "log.jsonl").read_text().splitlines()][-1] == 0.0
    final = train(config(tmp_path, tiny_qa_checkpoint, max_steps=400, max_minutes=1e-6, lr=1e-3), progress=False)
    state = json.loads((final / "training.json").read_text())
    assert state["step"] == 21 and state["total_steps"] == 21 and state["fitted"]["at_step"] == 20
    rows = [json.loads(r) for r in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows if "lr" in r][-1] == 0.0
    assert state["device"] == "cpu" or state["device"].startswith("cuda")


def test_fitted_steps_and_devices() -> None:
    assert fitted_steps(1000, 100, steps_per_s=10.0, seconds_left=30.0) == 400
    assert fitted_steps(1000, 100, steps_per_s=10.0, seconds_left=1e6) == 1000  # never more than planned
    assert fitted_steps(1000, 100, steps_per_s=10.0, seconds_left=-5.0) == 101  # over budget: one more step
    assert resolve_device("cpu").type == "cpu" and resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="not a device"):
        resolve_device("gpu0")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            resolve_device("cuda")


def test_inside_swaps_join_the_training_data_when_asked(tmp_path: Path) -> None:
    context = "Tokyo became the capital of Japan in 1868. Before that, the court sat in Kyoto."
    qa = {"id": "t", "question": "When did Tokyo become the capital of Japan?", "answers": [{"text": "1868", "answer_start": context.index("1868")}]}
    path = tmp_path / "two.json"
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"context": context, "qas": [qa]}]}]}))
    plain, counts = load_training_examples(TrainConfig(files=[str(path)], out="", negative_ratio=0.0))
    assert len(plain) == 1 and "inside_swapped_negatives" not in counts
    more, counts = load_training_examples(TrainConfig(files=[str(path)], out="", negative_ratio=0.0, inside_swap_negative_ratio=1.0))
    assert counts["inside_swapped_negatives"] == 1 and more[0] == plain[0]
    assert more[1].question == "When did Kyoto become the capital of Japan?" and more[1].is_impossible and more[1].context == context



def test_role_swaps_join_the_training_data_last_when_asked(tmp_path: Path) -> None:
    context = "Japanese Defense Minister Gen Nakatani met Yasar Guler in Ankara. The president was abroad."
    qa = {"id": "t", "question": "Who is the defense minister of Japan?", "answers": [{"text": "Gen Nakatani", "answer_start": context.index("Gen")}]}
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"context": context, "qas": [qa]}]}]}))
    base = {"files": [str(path)], "out": "", "negative_ratio": 0.0, "inside_swap_negative_ratio": 1.0}
    plain, counts = load_training_examples(TrainConfig(**base))
    assert "role_swapped_negatives" not in counts
    more, counts = load_training_examples(TrainConfig(**base, role_swap_negative_ratio=1.0))
    # Drawn after every other kind: what a seeded run made before stays the same.
    assert counts["role_swapped_negatives"] == 1 and more[: len(plain)] == plain
    assert more[-1].is_impossible and more[-1].id == "t-role" and "defense minister" not in more[-1].question

def test_prepared_examples_are_written_once_and_reused_only_for_the_same_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = TrainConfig(files=[str(write_squad(tmp_path / "train.json")) + ":20"], out=str(tmp_path / "run"), negative_ratio=0.5, cut_negative_ratio=0.3, seed=5)
    made, counts = training.prepare_examples(cfg)
    assert (made, counts) == load_training_examples(cfg)  # what a run makes, unchanged by the round trip
    path = tmp_path / "run" / "examples.jsonl.xz"
    read, read_counts, key = load_examples(path)
    assert read == made and read_counts == counts and key["seed"] == 5 and key["files"][0]["n"] == 20
    assert any(e.is_impossible for e in read) and any(e.answers for e in read)

    def no_reading(*_: object, **__: object) -> None:
        raise AssertionError("made again")

    monkeypatch.setattr(training, "load_squad", no_reading)  # making them reads the files
    assert training.prepare_examples(cfg) == (made, counts)  # reused: nothing made
    # Carried to a machine without the data: the file's name, sample size and settings match.
    moved = TrainConfig(**{**cfg.__dict__, "files": [str(tmp_path / "elsewhere" / "train.json:20")], "examples_file": str(path), "out": str(tmp_path / "gpu")})
    assert training.prepare_examples(moved) == (made, counts)
    # Named explicitly but made with another seed: refused, saying what differs, from the
    # file's header alone (not after reading every example); the file is kept.
    monkeypatch.setattr(training, "load_examples", no_reading)
    with pytest.raises(ValueError, match="seed 5 != 6"):
        training.prepare_examples(TrainConfig(**{**moved.__dict__, "seed": 6}))
    monkeypatch.undo()
    # The run's own file with other settings is made again (and rewritten).
    other, _ = training.prepare_examples(TrainConfig(**{**cfg.__dict__, "negative_ratio": 0.0}))
    assert len(other) < len(made) and load_examples(path)[2]["negative_ratio"] == 0.0
    # Damaged or foreign files are refused with how to remake them.
    bad = tmp_path / "bad.jsonl.xz"
    bad.write_bytes(b"not xz")
    with pytest.raises(ValueError, match="cannot be read as prepared examples.*--prepare-only"):
        load_examples(bad)
    lines = lzma.decompress(path.read_bytes()).decode().splitlines()
    bad.write_bytes(lzma.compress("\n".join(lines[:-1]).encode()))  # cut short: one example missing
    with pytest.raises(ValueError, match="cannot be read"):
        load_examples(bad)
    bad.write_bytes(lzma.compress(json.dumps({"format": "qa-reader-training-examples", "version": 99}).encode()))
    with pytest.raises(ValueError, match="not a qa-reader-training-examples file of version 1"):
        load_examples(bad)
    with pytest.raises(ValueError, match="not a qa-reader-training-examples file of version 1"):
        training.examples_key(bad)


def test_train_reader_prepare_only_writes_the_examples_and_a_run_elsewhere_trains_on_them(tmp_path: Path, tiny_qa_checkpoint: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "qa", "train-reader", *args, "--examples", str(tmp_path / "ex.jsonl.xz"), "--negative-ratio", "0.25"]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)

    out = run(str(write_squad(tmp_path / "t.json")), "--out", str(tmp_path / "o"), "--prepare-only")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["data"]["t.json"] == 32 and report["examples"] == 32 + report["data"]["negatives"]
    assert len(load_examples(tmp_path / "ex.jsonl.xz")[0]) == report["examples"] and not (tmp_path / "o" / "checkpoint").exists()
    # Another machine without the data file: the prepared examples are enough.
    gone = str(tmp_path / "elsewhere" / "t.json")
    trained = run(gone, "--out", str(tmp_path / "g"), "--base-model", str(tiny_qa_checkpoint), "--max-steps", "2", "--max-length", "64", "--stride", "16", "--no-bf16")
    assert trained.returncode == 0, trained.stderr
    assert json.loads((tmp_path / "g" / "final" / "training.json").read_text())["data"] == report["data"]
    other = run(gone, "--out", str(tmp_path / "h"), "--seed", "7", "--max-steps", "2")
    assert other.returncode == 1 and "seed 13 != 7" in other.stderr and "Traceback" not in other.stderr


def test_evaluation_data_is_refused_and_specs_parse(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="never train on it"):
        parse_file_spec("../shared/data/qa/eval/squad-v1.1-dev.json.gz")
    assert parse_file_spec("a/b.json.gz:300") == (Path("a/b.json.gz"), 300)
    assert parse_file_spec("a/b.json") == (Path("a/b.json"), None)


def test_train_reader_cli_bad_input(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "qa", "train-reader", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)

    missing = run(str(tmp_path / "nope.json"), "--out", str(tmp_path / "o"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    none = run("--out", str(tmp_path / "o"))
    assert none.returncode == 1 and "no training files" in none.stderr
    train_file = str(write_squad(tmp_path / "t.json"))
    device = run(train_file, "--out", str(tmp_path / "o"), "--device", "gpu0")
    assert device.returncode == 1 and "--device 'gpu0'" in device.stderr and "Traceback" not in device.stderr
    budget = run(train_file, "--out", str(tmp_path / "o"), "--max-minutes", "0")
    assert budget.returncode == 1 and "--max-minutes" in budget.stderr and not (tmp_path / "o").exists()


def _one_paragraph_squad(path: Path, context: str) -> str:
    """A SQuAD file of one paragraph and one question (its first word is the answer)."""
    row = {"data": [{"title": path.stem, "paragraphs": [{"context": context, "qas": [{"id": path.stem, "question": "What?", "answers": [{"text": context.split()[0], "answer_start": 0}]}]}]}]}
    path.write_text(json.dumps(row))
    return str(path)


def _answers_with_an_exact_span(folder: Path) -> None:
    """A released folder loads and answers like any checkpoint directory, with an exact span."""
    reader = TransformersReader(str(folder), threshold=0.0, quantize="none")
    doc = "The capital of Turkey is Ankara."
    answer = reader.read("What is the capital?", [Passage("t.txt", "/t.txt", "t.txt#0", 0, len(doc), doc, 1.0, doc)])
    assert answer.text is not None and doc[answer.citations[0].answer_start : answer.citations[0].answer_end] == answer.text


def test_export_reader_cli_writes_fp16_release(tmp_path: Path, tiny_qa_checkpoint: Path) -> None:
    from safetensors.numpy import load_file

    done = subprocess.run(
        [sys.executable, "-m", "qa", "export-reader", str(tiny_qa_checkpoint), "--to", str(tmp_path / "rel")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    weights = load_file(str(tmp_path / "rel" / "model.safetensors"))
    assert {str(v.dtype) for v in weights.values() if v.dtype.kind == "f"} == {"float16"}
    assert (tmp_path / "rel" / "tokenizer.json").is_file() and (tmp_path / "rel" / "config.json").is_file()
    # The release loads and answers like any checkpoint directory.
    _answers_with_an_exact_span(tmp_path / "rel")
    bad = subprocess.run([sys.executable, "-m", "qa", "export-reader", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "not a trained model directory" in bad.stderr


def test_a_release_keeps_the_lineage_of_the_weights_it_continued(tmp_path: Path, tiny_qa_checkpoint: Path) -> None:
    """A run that continues a release records that release's training.json under "base"
    (read before export overwrites the folder), and the calibrator excludes the paragraphs of
    every run in the chain: the base's files as well as this run's."""
    import shutil

    from qa.reader.training import export_checkpoint
    from qa.tools.calibrate import trained_contexts

    release = tmp_path / "release"
    shutil.copytree(tiny_qa_checkpoint, release)
    (release / "training.json").write_text(json.dumps({"config": {"files": [_one_paragraph_squad(tmp_path / "old.json", "Older paragraph text.")], "holdout_percent": 0}}))
    run = tmp_path / "run"
    shutil.copytree(tiny_qa_checkpoint, run)
    (run / "training.json").write_text(json.dumps({"config": {"files": [_one_paragraph_squad(tmp_path / "new.json", "Newer paragraph text.")], "holdout_percent": 0, "base_model": str(release)}}))
    assert trained_contexts(run) == {"Newer paragraph text.", "Older paragraph text."}  # the base's, read from its folder
    export_checkpoint(run, release)  # the release folder is the base and the destination
    meta = json.loads((release / "training.json").read_text())
    assert meta["base"]["config"]["files"] == [str(tmp_path / "old.json")]
    assert trained_contexts(release) == {"Newer paragraph text.", "Older paragraph text."}


def test_export_of_several_runs_is_their_average(tmp_path: Path, tiny_qa_checkpoint: Path) -> None:
    """A model soup: ``export-reader A B`` writes the uniform average of the runs' weights (fp16),
    records each run under "of", and the calibrator excludes what any of them trained on."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from qa.tools.calibrate import trained_contexts

    runs = []
    for n, context in enumerate(["First run's paragraph.", "Second run's paragraph."]):
        run = tmp_path / f"run{n}"
        shutil.copytree(tiny_qa_checkpoint, run)
        weights = load_file(str(run / "model.safetensors"))
        torch.manual_seed(n)
        save_file({k: v + torch.randn_like(v) if v.is_floating_point() else v for k, v in weights.items()}, str(run / "model.safetensors"))
        (run / "training.json").write_text(json.dumps({"config": {"files": [_one_paragraph_squad(tmp_path / f"f{n}.json", context)], "holdout_percent": 0}}))
        runs.append(run)
    done = subprocess.run(
        [sys.executable, "-m", "qa", "export-reader", *map(str, runs), "--to", str(tmp_path / "soup")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "average of" in done.stdout
    soup = load_file(str(tmp_path / "soup" / "model.safetensors"))
    a, b = (load_file(str(r / "model.safetensors")) for r in runs)
    for k, v in soup.items():
        assert v.dtype == torch.float16
        assert torch.allclose(v.float(), (a[k] + b[k]) / 2, atol=2e-3, rtol=2e-3), k
    meta = json.loads((tmp_path / "soup" / "training.json").read_text())
    assert "soup" in meta and [m["config"]["files"] for m in meta["of"]] == [[str(tmp_path / "f0.json")], [str(tmp_path / "f1.json")]]
    assert trained_contexts(tmp_path / "soup") == {"First run's paragraph.", "Second run's paragraph."}
    # The soup loads and answers like any checkpoint.
    _answers_with_an_exact_span(tmp_path / "soup")


def test_export_refuses_to_average_different_architectures(tmp_path: Path, tiny_qa_checkpoint: Path) -> None:
    from transformers import BertConfig, BertForQuestionAnswering

    from qa.reader.training import export_checkpoint

    other = tmp_path / "wider"
    BertForQuestionAnswering(BertConfig(vocab_size=100, hidden_size=48, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)).save_pretrained(other)
    with pytest.raises(ValueError, match="cannot be averaged"):
        export_checkpoint([tiny_qa_checkpoint, other], tmp_path / "soup")
    assert not (tmp_path / "soup").exists()  # nothing written
    with pytest.raises(ValueError, match="no model directory"):
        export_checkpoint([], tmp_path / "soup")


def test_a_cut_run_goes_on_from_its_learning_rate_without_a_jump() -> None:
    # Planned: 14,345 steps with a 717-step warm-up; cut at step 220 (rate 220/717 of the peak)
    # to 1,254 steps: up to the peak within 5 % of the new run, then down to 0 at its end.
    from qa.reader.training import lr_factor

    start = lr_factor(220, 717, 14345)
    fit = {"at_step": 220, "total_steps": 1254, "from": start, "peak_at": 220 + 62}
    rates = [lr_factor(s, 717, 14345, fit) for s in range(0, 1255)]
    assert rates[:221] == [lr_factor(s, 717, 14345) for s in range(221)]  # the steps done keep theirs
    assert rates[282] == 1.0 and rates[1254] == 0.0 and max(rates) == 1.0
    assert max(abs(b - a) for a, b in pairwise(rates)) < 0.012  # no jump anywhere
    # Cut after the warm-up: the decay goes on from the rate reached, to 0 at the new end.
    late = lr_factor(900, 717, 14345)
    fit2 = {"at_step": 900, "total_steps": 1000, "from": late, "peak_at": 900}
    assert lr_factor(900, 717, 14345, fit2) == late and lr_factor(950, 717, 14345, fit2) == pytest.approx(late / 2)
    assert lr_factor(1000, 717, 14345, fit2) == 0.0
    # A fit recorded before this schedule (no "from"): the plain schedule over the new end.
    old = {"at_step": 220, "total_steps": 1254}
    assert lr_factor(800, 717, 14345, old) == pytest.approx((1254 - 800) / (1254 - 717))


def test_a_later_fit_moves_the_end_again_without_a_jump() -> None:
    # Session 13: three runs on one GPU, 4.2 minutes each, planned 9,000 steps with a 450-step
    # warm-up; measured at 11 steps/s while the others still prepared data -> cut to ~2,600
    # steps; at 30 steps/s later, a second fit gives the steps the budget still allows.
    from qa.reader.training import lr_factor, refit_end

    first = refit_end(200, 11.0, 218.0, 9000, 450, 0.05, None)
    assert first is not None and first["total_steps"] == 200 + int(218.0 * 11.0) and first["peak_at"] == 200 + int(0.05 * first["total_steps"])
    assert first["from"] == pytest.approx(200 / 450)
    second = refit_end(462, 30.0, 194.0, 9000, 450, 0.05, first)
    assert second is not None and second["total_steps"] == 462 + int(194.0 * 30.0) and second["peak_at"] == 462  # past the peak: decays from here
    rates = [lr_factor(s, 450, 9000, first) for s in range(463)] + [lr_factor(s, 450, 9000, second) for s in range(463, second["total_steps"] + 1)]
    assert second["from"] == pytest.approx(lr_factor(462, 450, 9000, first)) and rates[-1] == 0.0
    assert max(abs(b - a) for a, b in pairwise(rates)) < 0.01  # no jump at either fit
    # Never past the planned end; an end within 2 % of the one it has stays (None: no new schedule).
    assert refit_end(500, 1000.0, 1e6, 9000, 450, 0.05, second)["total_steps"] == 9000
    assert refit_end(600, 30.0, (second["total_steps"] - 600) / 30.0 + 1.0, 9000, 450, 0.05, second) is None
    # The first fit when the planned run fits: recorded, with the plain schedule (no "from").
    assert refit_end(200, 100.0, 1e6, 9000, 450, 0.05, None) == {"at_step": 200, "steps_per_s": 100.0, "total_steps": 9000}


def test_the_speed_is_measured_again_soon_enough_to_grow_a_short_run() -> None:
    from qa.reader.training import next_fit_at

    assert next_fit_at(200, 200, 341) == 234  # cut to 341 by a paused first measurement
    assert next_fit_at(200, 200, 2624) == 400  # a tenth of the run, at most fit_n
    assert next_fit_at(200, 200, 100000) == 400
    assert next_fit_at(20, 20, 21) is None  # less than a fifth of the run left
    assert next_fit_at(10, 10, 30) == 20 and next_fit_at(20, 10, 30) is None
