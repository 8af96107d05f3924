"""Command line: ``qa index|add|remove|list|ask|bench|eval|train-reader|eval-reader|auth`` (also ``python -m qa``).

Errors from bad input are printed as one line on stderr with a non-zero exit status,
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qa import config
from qa.answer import Answer, percent

EXIT_USAGE = 2


def _add_threshold_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="answer only when the chance the answer is right is at least this, 0-1 (e.g. 0.8); "
        "default: the reader's own (the shipped reader's is measured; see README, Reader)",
    )


def _given_path(text: str) -> Path:
    """A path argument; an empty one is refused (``Path("")`` would be the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give a path")
    return Path(text)


def index_argument(text: str) -> Any:
    """``--index`` (also ``python -m ui``'s): a folder or a ``postgresql://`` URL, never empty (an
    unset shell variable)."""
    from embeddings.stores import index_location

    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give an index folder or a postgresql:// URL (or leave --index out for the default)")
    return index_location(text)


def _add_index_arg(p: argparse.ArgumentParser) -> None:
    from embeddings.stores import display_location

    p.add_argument(
        "--index",
        type=index_argument,
        default=config.DEFAULT_INDEX_DIR,
        help=f"index directory, or a postgresql:// URL for the PostgreSQL store (default: {display_location(config.DEFAULT_INDEX_DIR)})",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``qa`` argument parser."""
    parser = argparse.ArgumentParser(prog="qa", description="Extractive question answering over your documents.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and model loading")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", help="build or update an index from a folder of documents")
    p.add_argument("docs_dir", nargs="?", type=_given_path, default=None, help=f"documents folder (default: {config.DEFAULT_DOCS_DIR})")
    _add_index_arg(p)
    p.add_argument("--rebuild", action="store_true", help="re-embed everything instead of updating incrementally")
    p.add_argument(
        "--compact", action="store_true",
        help="only merge the index's segments into one, dropping removed documents' rows (no folder is read)",
    )
    p.add_argument("--embedding-model", default=None, help="sentence-transformers model name or path")
    p.add_argument("--wait", type=float, default=0.0, help="seconds to wait for another writer's lock")

    p = sub.add_parser(
        "add",
        help="add files or folders to an index (created if missing)",
        description="Add documents to an index incrementally. A file's id is its file name; files under a "
        "folder get their path relative to that folder. A file with an id already indexed replaces it.",
    )
    p.add_argument("paths", nargs="+", type=_given_path, help="files (.txt .md .html .htm .pdf .docx) and folders")
    _add_index_arg(p)
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for another writer's lock (default: %(default)s)")

    p = sub.add_parser("remove", help="remove documents from an index by id")
    p.add_argument("doc_ids", nargs="+", help="document ids, as listed by `python -m qa list`")
    _add_index_arg(p)
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for another writer's lock (default: %(default)s)")

    p = sub.add_parser("list", help="list the documents of an index")
    _add_index_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object per document")

    p = sub.add_parser("ask", help="answer a question (or one question per line of stdin)")
    p.add_argument("question", nargs="?", default=None, help="the question; omit it (or give -) to read one question per line of stdin")
    _add_index_arg(p)
    p.add_argument("--top-k", type=int, default=None, help=f"passages to read (default {config.DEFAULT_TOP_K})")
    p.add_argument("--reader", default=None, help="transformers (the only reader; pick its checkpoint with --reader-model)")
    p.add_argument("--reader-model", default=None, help="transformers reader checkpoint: hub id or local directory")
    p.add_argument("--retriever", default=None, choices=config.RETRIEVERS, help=f"retriever (default: {config.DEFAULT_RETRIEVER})")
    p.add_argument("--json", action="store_true", help="print one JSON object per question")
    _add_threshold_arg(p)

    p = sub.add_parser("bench", help="print speed benchmarks")
    p.add_argument(
        "what",
        choices=["index", "ask", "store", "scale", "encoders", "query", "api"],
        help="what to measure (store: directory vs PostgreSQL; scale: the directory store at --chunks sizes, "
        "on synthetic clustered vectors, see qa.tools.bench.scale_corpus, or on real text with --vectors real; encoders: throughput and recall per encoder "
        "variant; query: where one question's dense retrieval spends its time, and queries/s under concurrency; "
        "api: concurrent HTTP API clients against python -m ui servers while an editor uploads and removes, "
        "see qa.tools.bench_api)",
    )
    p.add_argument(
        "--chunks", type=int, nargs="+", default=None,
        help="store, query: synthetic chunks (default: 100000 for store, 5507 for query); "
        "scale: one or more sizes (default: 10000 100000; 10000 50000 with --vectors real)",
    )
    p.add_argument("--json", action="store_true", help="scale: one JSON object per line per size; api: one JSON object")
    p.add_argument(
        "--vectors", choices=["synthetic", "real"], default="synthetic",
        help="scale: synthetic clustered vectors (default), or real text embedded by the default encoder (needs --texts)",
    )
    p.add_argument(
        "--texts", type=Path, action="append", default=None, metavar="PATH",
        help="scale --vectors real: a SQuAD .json(.gz) file or a folder of them and/or documents (repeatable)",
    )
    p.add_argument("--cache", type=Path, default=None, help="scale --vectors real: vector cache folder (default: QA_CACHE_DIR/bench-vectors)")
    p.add_argument("--nprobe", type=int, nargs="+", default=None, help="scale: also measure recall and latency at these IVF nprobe values")
    p.add_argument("--url", default=None, help="store: a disposable PostgreSQL database (default: a temporary server)")
    p.add_argument("--docs", type=Path, default=config.DEFAULT_DOCS_DIR, help="documents to measure on")
    p.add_argument("--copies", type=int, default=40, help="index: replicate the documents this many times")
    p.add_argument("--questions", type=Path, default=None, help="ask: JSON Lines file of questions")
    p.add_argument("--reader", default=None, help="ask: reader to measure")
    p.add_argument("--variant", default=None, help="index, query: encoder variant (default: QA_ENCODER_VARIANT)")
    p.add_argument("--variants", default=None, help="encoders: comma-separated variants (default: all)")
    p.add_argument("--rounds", type=int, default=1, help="encoders: timing rounds, best counts; ask: passes over the questions (default: %(default)s)")
    p.add_argument("--no-recall", action="store_true", help="encoders: throughput only")
    p.add_argument("--threads", type=int, default=8, help="query: concurrent threads (default: %(default)s)")
    p.add_argument("--clients", type=int, default=50, help="api: concurrent asking clients (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=60.0, help="api: how long they ask (default: %(default)s)")
    p.add_argument("--processes", type=int, choices=[1, 2], default=1, help="api: server processes (2 needs --store postgres)")
    p.add_argument("--store", choices=["dir", "postgres"], default="dir", help="api: index store (postgres: a temporary server)")
    p.add_argument("--faults", action="store_true", help="api: then disconnecting, slow and 100 MB-body clients")

    p = sub.add_parser("eval", help="score answers and retrieval on a JSON Lines question file")
    p.add_argument("questions", type=Path, help='JSON Lines: {"question": ..., "answers": [...]} per line; [] = unanswerable')
    _add_index_arg(p)
    p.add_argument("--top-k", type=int, default=None, help=f"passages to read (default {config.DEFAULT_TOP_K})")
    p.add_argument("--reader", default=None, help="transformers (the only reader; pick its checkpoint with --reader-model)")
    p.add_argument("--reader-model", default=None, help="transformers reader checkpoint: hub id or local directory")
    p.add_argument("--retriever", default=None, choices=config.RETRIEVERS, help=f"retriever (default: {config.DEFAULT_RETRIEVER})")
    p.add_argument("--json", action="store_true", help="print one JSON object (summary, config and per-question records)")
    _add_threshold_arg(p)

    from qa.reader.training import TrainConfig

    d = TrainConfig(files=[], out="")
    p = sub.add_parser(
        "train-reader",
        help="fine-tune the extractive reader on SQuAD-format files",
        description="Fine-tune an extractive reader (AutoModelForQuestionAnswering) on SQuAD 1.1/2.0 JSON files. "
        "FILE:N takes a seeded sample of N questions from FILE.",
    )
    p.add_argument("files", nargs="*", help="SQuAD .json/.json.gz training files, each optionally FILE:N")
    p.add_argument("--out", type=Path, default=Path("checkpoints/reader"), help="run folder: checkpoint/, final/, log.jsonl (default: %(default)s)")
    p.add_argument("--base-model", default=d.base_model, help="starting weights: packaged:all-MiniLM-L6-v2 or a local directory")
    p.add_argument("--epochs", type=float, default=d.epochs)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps (overrides --epochs)")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (linear warm-up and decay)")
    p.add_argument("--warmup", type=float, default=d.warmup, help="warm-up share of the steps")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--max-length", type=int, default=d.max_length, help="window length in tokens")
    p.add_argument("--stride", type=int, default=d.stride, help="tokens shared by neighbouring windows")
    p.add_argument("--negative-ratio", type=float, default=d.negative_ratio, help="share of questions also paired with another paragraph as 'no answer'")
    p.add_argument("--cut-negative-ratio", type=float, default=d.cut_negative_ratio, help="share of questions also paired with their own paragraph minus the answer's sentence as 'no answer'")
    p.add_argument("--retrieved-negative-ratio", type=float, default=d.retrieved_negative_ratio, help="share of questions also paired with their best BM25 paragraph of another article as 'no answer'")
    p.add_argument("--swap-negative-ratio", type=float, default=d.swap_negative_ratio, help="share of questions also asked with one name or number swapped for one their paragraph never mentions, as 'no answer'")
    p.add_argument("--contrast-negative-ratio", type=float, default=d.contrast_negative_ratio, help="share of questions also asked with a word turned to its opposite or an impossible year added, as 'no answer'")
    p.add_argument("--inside-swap-negative-ratio", type=float, default=d.inside_swap_negative_ratio, help="share of questions also asked with one name or number swapped for another of their own paragraph, as 'no answer' (SQuAD 2.0's hardest kind)")
    p.add_argument("--role-swap-negative-ratio", type=float, default=d.role_swap_negative_ratio, help="share of questions also asked about another role of their role's kind ('prime minister' for 'defense minister') that their paragraph never mentions, as 'no answer'")
    p.add_argument("--typo-ratio", type=float, default=d.typo_ratio, help="share of answerable questions also asked with one word misspelt (same answer)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--checkpoint-minutes", type=float, default=d.checkpoint_minutes)
    p.add_argument("--no-bf16", action="store_true", help="train in fp32 (bf16 autocast is the default)")
    p.add_argument("--threads", type=int, default=0, help="PyTorch threads (0: PyTorch's default)")
    p.add_argument("--eval-file", default=None, help="SQuAD file for a dev-slice learning curve at each checkpoint")
    p.add_argument("--eval-limit", type=int, default=d.eval_limit)
    p.add_argument("--holdout-percent", type=float, default=d.holdout_percent, help="percent of each file's articles kept out of training (for fitting the confidence calibrator)")
    p.add_argument("--device", default=None, help=f"auto (a CUDA GPU when PyTorch sees one, else the CPU), cpu or cuda (default: {d.device}; on --resume: the run's own)")
    p.add_argument("--max-minutes", type=float, default=None, help="fit the run into this many minutes of training: the step count is cut to what the measured speed allows (measured again each tenth of the run) and the learning rate decays to 0 there")
    p.add_argument(
        "--resume", action="store_true",
        help="continue the run in --out from its last checkpoint, with its saved settings; of the rest, only --no-bf16, --threads and --device apply (e.g. on another machine)",
    )
    p.add_argument(
        "--examples", type=Path, default=None,
        help="prepared examples file: used when made with the same data settings, else made and written there "
        "(default: OUT/examples.jsonl.xz, so --resume skips making them); with it the training files need not be here",
    )
    p.add_argument("--prepare-only", action="store_true", help="make and write the examples (--examples or OUT/examples.jsonl.xz), then stop: to carry them to another machine")

    p = sub.add_parser(
        "export-reader",
        help="release a trained model as the shipped reader (fp16 safetensors); several: their average",
        description="Write a trained model as a release (fp16 safetensors, config, tokenizer, training.json). "
        "Given several trained folders of one architecture (e.g. runs continued from one release with other seeds), "
        "it writes the uniform average of their weights, a 'model soup'. Run calibrate-reader on the result.",
    )
    p.add_argument("model_dir", type=Path, nargs="+", help="a trained model folder, e.g. checkpoints/reader/final (several: averaged)")
    p.add_argument("--to", type=Path, default=None, help="destination (default: the package's shipped reader folder)")

    p = sub.add_parser(
        "calibrate-reader",
        help="fit the reader's confidence (the chance an answer is right) on held-out training articles",
        description="Fit calibration.json beside a reader checkpoint: its best spans on the held-out articles of "
        "SQuAD-format training files (never the ones it trained on), read through a real index and retriever, "
        "labelled right or wrong; a logistic regression maps them to P(correct). Prints the report.",
    )
    p.add_argument("files", nargs="+", help="SQuAD .json/.json.gz training files (the held-out share of each is used)")
    p.add_argument("--reader-model", default=None, help="local checkpoint directory (default: the shipped reader)")
    p.add_argument("--holdout-percent", type=float, default=5.0, help="the held-out share training left out (default: %(default)s)")
    p.add_argument("--per-kind", type=int, default=1200, help="answerable questions asked (other kinds in proportion; default: %(default)s)")
    p.add_argument("--top-k", type=int, default=None, help="passages read per question (default: the product's)")
    p.add_argument("--out", type=Path, default=None, help="where to write the calibrator (default: calibration.json beside the weights)")
    p.add_argument("--cases", type=Path, default=None, help="keep the collected cases here (JSON Lines, each with what the reader read and decoded) and reuse them when the weights and settings match: a refit, even after a feature changed, takes seconds")
    p.add_argument(
        "--unanswerable-share", type=float, default=None,
        help="share of the questions asked through retrieval that the documents cannot answer, fitted for "
        "(default: qa/config.py CALIBRATION_UNANSWERABLE_SHARE)",
    )
    p.add_argument(
        "--sets", nargs="?", const="", default=None, metavar="DIR",
        help="also ask question sets through ask() and choose the threshold by the mean of their accuracy and the "
        "hold-outs' (how a release's threshold is chosen); reports the sets at it. Without DIR: the project's sets "
        "(notebooks/data); DIR: your own, DIR or each sub-folder of it holding docs/ and questions.jsonl",
    )

    p = sub.add_parser("eval-reader", help="SQuAD EM/F1 of the reader, each question on its own paragraph")
    p.add_argument("file", type=Path, help="SQuAD .json or .json.gz file")
    p.add_argument("--limit", type=int, default=None, help="the first N questions in file order")
    p.add_argument(
        "--held-out", type=float, default=None, metavar="PERCENT",
        help="only the articles a training run with --holdout-percent PERCENT kept out of this training file: "
        "compare runs without touching the evaluation data (--limit counts these questions)",
    )
    p.add_argument("--reader-model", default=None, help="checkpoint: hub id or local directory (default: the shipped reader)")
    p.add_argument("--threshold", type=float, default=None, help="abstention threshold (default: the shipped one)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser(
        "auth",
        help="manage who may sign in to the chat and the HTTP API (python -m ui)",
        description="Users of the chat and HTTP API, with roles: viewer (ask, list) or editor (also upload and "
        "remove). Stored hashed (scrypt, SHA-256 tokens) in a credentials file: QA_AUTH_FILE, else auth.json beside "
        "the index directory (the current directory for a postgresql:// index).",
    )
    auth_sub = p.add_subparsers(dest="auth_command", required=True)

    def _auth_file_args(a: argparse.ArgumentParser) -> None:
        a.add_argument("--auth-file", type=Path, default=None, help="credentials file (default: QA_AUTH_FILE, else auth.json beside --index)")
        _add_index_arg(a)

    a = auth_sub.add_parser(
        "add-user",
        help="add a user; prints their API token (last line)",
        description="Add a user. The password is read from stdin when it is not a terminal (one line), else "
        "prompted for twice; it is never an argument. Prints the user's API token as the last line: it is shown "
        "only once.",
    )
    a.add_argument("name", help="user name (letters, digits and . _ @ -)")
    a.add_argument("--role", required=True, choices=["viewer", "editor"], help="viewer: ask and list; editor: also upload and remove")
    a.add_argument("--replace", action="store_true", help="replace an existing user of that name (new password and token)")
    _auth_file_args(a)
    a = auth_sub.add_parser("remove-user", help="remove a user (their sign-in and API token stop working)")
    a.add_argument("name", help="user name")
    _auth_file_args(a)
    a = auth_sub.add_parser("list", help="list user names and roles")
    _auth_file_args(a)
    return parser


def _cmd_train_reader(args: argparse.Namespace) -> int:
    from qa.reader.training import TrainConfig, train

    if not args.files and not args.resume:
        raise ValueError("no training files; pass SQuAD .json/.json.gz files (or --resume)")
    cfg = TrainConfig(
        files=list(args.files),
        out=str(args.out),
        base_model=args.base_model,
        epochs=args.epochs,
        max_steps=args.max_steps,
        lr=args.lr,
        warmup=args.warmup,
        batch_size=args.batch_size,
        max_length=args.max_length,
        stride=args.stride,
        negative_ratio=args.negative_ratio,
        cut_negative_ratio=args.cut_negative_ratio,
        retrieved_negative_ratio=args.retrieved_negative_ratio,
        swap_negative_ratio=args.swap_negative_ratio,
        contrast_negative_ratio=args.contrast_negative_ratio,
        typo_ratio=args.typo_ratio,
        inside_swap_negative_ratio=args.inside_swap_negative_ratio,
        role_swap_negative_ratio=args.role_swap_negative_ratio,
        seed=args.seed,
        checkpoint_minutes=args.checkpoint_minutes,
        bf16=not args.no_bf16,
        threads=args.threads,
        eval_file=args.eval_file,
        eval_limit=args.eval_limit,
        holdout_percent=args.holdout_percent,
        device=args.device or TrainConfig.device,
        max_minutes=args.max_minutes,
        examples_file=None if args.examples is None else str(args.examples),
    )
    if args.prepare_only:
        from qa.reader.training import examples_path, prepare_examples

        if args.resume:
            raise ValueError("--prepare-only makes a new run's examples; drop --resume")
        examples, counts = prepare_examples(cfg)
        print(json.dumps({"examples": len(examples), "data": counts, "file": str(examples_path(cfg))}))
        return 0
    if not args.resume:
        from qa.reader.training import resolve_device

        resolve_device(cfg.device)  # fail on a bad --device before the data are read
        for spec in cfg.files:  # fail on a bad file before the model loads
            from qa.reader.training import parse_file_spec

            path, _ = parse_file_spec(spec)
            if not path.is_file() and not (args.examples is not None and args.examples.is_file()):
                raise ValueError(f"training file {spec!r} does not exist")
    # On resume, only the compute settings given here change the saved ones.
    resume_with: dict[str, object] = {}
    if args.resume:
        if args.no_bf16:
            resume_with["bf16"] = False
        if args.threads:
            resume_with["threads"] = args.threads
        if args.device is not None:
            resume_with["device"] = args.device
        # Said, not silently dropped: the checkpoint fixes what the run learns from and its schedule.
        from dataclasses import fields

        from qa.reader.training import RESUME_OVERRIDES

        taken, d = (*RESUME_OVERRIDES, "out"), TrainConfig(files=[], out="")  # the settings a resume uses
        ignored = [f"{f.name}={getattr(cfg, f.name)!r}" for f in fields(cfg) if f.name not in taken and getattr(cfg, f.name) != getattr(d, f.name)]
        if ignored:
            print(f"train-reader --resume: the run continues with its saved settings; ignored: {', '.join(ignored)}", file=sys.stderr)
    final = train(cfg, resume=args.resume, resume_with=resume_with or None)
    print(f"saved {final}")
    return 0


def _cmd_export_reader(args: argparse.Namespace) -> int:
    from qa.reader import SHIPPED_READER_DIR
    from qa.reader.training import export_checkpoint

    out = export_checkpoint(args.model_dir, args.to or SHIPPED_READER_DIR)
    size = (out / "model.safetensors").stat().st_size / 1e6
    what = str(args.model_dir[0]) if len(args.model_dir) == 1 else f"the average of {', '.join(map(str, args.model_dir))}"
    print(f"exported {what} to {out} ({size:.1f} MB fp16)")
    return 0


def _question_sets(folder: str) -> dict[str, tuple[Path, Path]]:
    """The question sets of ``--sets [DIR]``: the project's (``""``) or those under ``DIR``;
    refused when there are none."""
    from qa.tools.bench import question_sets

    if not folder:
        sets = question_sets()
        if not sets:
            raise ValueError(f"--sets: no question sets under {config.PROJECT_ROOT / 'notebooks' / 'data'}; run from a checkout of the project, or give --sets DIR")
        return sets
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ValueError(f"--sets {folder!r} is not a folder; give a folder holding docs/ and questions.jsonl (or sub-folders that do)")
    sets = question_sets(root)
    if not sets:
        raise ValueError(
            f"--sets {folder!r}: neither it nor a sub-folder holds both docs/ (the documents) and questions.jsonl "
            "(one JSON object per line with question and answers); see notebooks/data/train for the layout"
        )
    return sets


def _cmd_calibrate_reader(args: argparse.Namespace) -> int:
    from qa.tools.calibrate import calibrate_reader

    if args.per_kind < 10:
        raise ValueError(f"--per-kind {args.per_kind} is too small; use at least 10 (the default is 1200)")
    result = calibrate_reader(
        list(args.files), reader_model=args.reader_model, holdout_percent=args.holdout_percent, per_kind=args.per_kind,
        top_k=args.top_k, out=args.out, cases_file=args.cases, unanswerable_share=args.unanswerable_share,
        sets=_question_sets(args.sets) if args.sets is not None else None,
    )
    print(json.dumps(result, indent=1))
    return 0


def _cmd_eval_reader(args: argparse.Namespace) -> int:
    from qa.reader.squad import load_squad
    from qa.reader.squad_eval import format_eval, run_eval

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit {args.limit} must be at least 1")
    if args.held_out is not None and not 0 < args.held_out < 100:
        raise ValueError(f"--held-out {args.held_out} is not a percent between 0 and 100 (exclusive); give the run's --holdout-percent, e.g. 5")
    if args.held_out is None:
        examples = load_squad(args.file, limit=args.limit)
    else:
        from qa.reader.squad import split_holdout

        examples = split_holdout(load_squad(args.file), args.held_out)[1][: args.limit]
    if not examples:
        raise ValueError(f"{args.file} has no questions" + ("" if args.held_out is None else f" in its {args.held_out} % held out"))
    result = run_eval(examples, model=args.reader_model, threshold=args.threshold)
    print(json.dumps(result) if args.json else format_eval(result))
    return 0


def _cmd_index(args: argparse.Namespace) -> int:
    from embeddings.encoders.encoder import get_encoder
    from embeddings.stores import display_location
    from qa.ingest.indexing import compact_index, index_folder

    if args.compact:
        if args.docs_dir is not None or args.rebuild:
            raise ValueError("--compact takes no documents folder and no --rebuild: it only merges the index's segments")
        _print_report(compact_index(args.index, lock_wait_s=args.wait))
        return 0
    if args.docs_dir is None and args.index != config.DEFAULT_INDEX_DIR:
        # seeds/ is the default index's folder: indexed into the user's own index it would add the
        # project's sample article to their documents.
        raise ValueError(
            f"name the documents folder to index into {display_location(args.index)}: python -m qa index DOCS_DIR --index "
            f"{display_location(args.index)} (without --index, qa index builds the default index over {config.DEFAULT_DOCS_DIR})"
        )
    report = index_folder(
        args.docs_dir if args.docs_dir is not None else config.DEFAULT_DOCS_DIR,
        args.index,
        encoder=get_encoder(args.embedding_model),
        rebuild=args.rebuild,
        show_progress=True,
        lock_wait_s=args.wait,
    )
    _print_report(report)
    # Files were refused and the index holds no document (every file of the folder was
    # unreadable): a failure for a script too, like `qa add` taking none of its files.
    return 1 if report.skipped and not (report.added or report.changed or report.unchanged) else 0


def _print_report(report) -> None:  # noqa: ANN001 - qa.ingest.indexing.IndexReport
    for s in report.skipped:
        print(f"skipped {s.path}: {s.reason}", file=sys.stderr)
    print(report.summary())


def _cmd_add(args: argparse.Namespace) -> int:
    from qa.ingest.indexing import add_files

    report = add_files(args.index, args.paths, show_progress=True, lock_wait_s=args.wait)
    _print_report(report)
    # No named file was taken (all refused, or refused and the rest already indexed as they are):
    # say so through the exit status too. (Documents indexed before do not count.)
    return 1 if report.skipped and not (report.added or report.changed) else 0


def _cmd_remove(args: argparse.Namespace) -> int:
    from qa.ingest.indexing import remove_documents

    # Only what a removal does: nothing is added or embedded, so no "0 added ... (0 embedded)".
    print(remove_documents(args.index, args.doc_ids, lock_wait_s=args.wait).removal_summary())
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from qa.ingest.indexing import list_documents, plural

    docs = list_documents(args.index)
    for d in docs:
        if args.json:
            print(json.dumps(asdict(d), ensure_ascii=False))
        else:
            pages = f", {plural(d.pages, 'page')}" if d.pages is not None else ""
            origin = "added (kept until removed)" if d.origin == "added" else f"from {d.source}"
            print(f"{d.doc_id}\t{d.kind}, {plural(d.chunks, 'chunk')}, {plural(d.characters, 'character')}{pages}\t{origin}")
    if not args.json:
        from embeddings.stores import display_location

        print(f"{plural(len(docs), 'document')} in {display_location(args.index)}", file=sys.stderr)
    return 0


def format_answer(answer: Answer) -> str:
    """The answer and its citation, for a person reading a terminal."""
    lines = [f"Q: {answer.question}"]
    if answer.text is None:
        best = f"its best guess has a {percent(answer.score, guess=True)} chance of being right; " if answer.guess is not None else ""
        lines.append(f"A: I don't know ({best}reader: {answer.reader})")
        if answer.guess is not None:
            g = answer.guess
            before, guess, after = g.split_passage()
            page = f" p. {g.page}," if g.page is not None else ""
            lines.append(f"   closest (a guess, not an answer): {guess}   [{g.doc_id}{page} chars {g.answer_start}-{g.answer_end}]")
            lines.append(_one_line(f"    {before}>>{guess}<<{after}"))
        elif answer.passages:
            p = answer.passages[0]
            page = f" p. {p.page}" if p.page is not None else ""
            lines.append(f"   closest passage: {p.doc_id}{page} [{p.start}:{p.end}]")
        return "\n".join(lines)
    lines.append(f"A: {answer.text}   ({percent(answer.score)} chance this is right; reader: {answer.reader})")
    for n, c in enumerate(answer.citations, 1):
        before, _, after = c.split_passage()
        page = f" p. {c.page}," if c.page is not None else ""
        lines.append(f"[{n}] {c.doc_id}{page} chars {c.answer_start}-{c.answer_end} (chunk {c.chunk_id})")
        lines.append(_one_line(f"    {before}>>{answer.text}<<{after}"))
    return "\n".join(lines)


def _one_line(text: str) -> str:
    """``text`` on one terminal line: line breaks (CRLF and CR too: a CR would send the cursor back
    and print over the context) and tabs as spaces."""
    return text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ").replace("\t", " ")


def _cmd_ask(args: argparse.Namespace) -> int:
    from qa.pipeline import ask, load_index, validate_question, validate_threshold
    from qa.reader import get_reader

    validate_threshold(args.threshold)  # bad input fails before anything loads
    if args.question == "-":  # the Unix convention for "read standard input"
        args.question = None
    if args.question is not None:
        validate_question(args.question)
    # Load once (index first: a bad --index fails before any model loads), then answer
    # every question with the same models.
    index = load_index(args.index if args.index != config.DEFAULT_INDEX_DIR else None)
    reader = get_reader(args.reader, model=args.reader_model)

    def answer_one(question: str) -> int:
        try:
            validate_question(question)
            answer = ask(question, index=index, top_k=args.top_k, reader=reader, retriever=args.retriever, threshold=args.threshold)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            if args.json and args.question is None:
                # One JSON line per question read, so a script can pair outputs with inputs.
                print(json.dumps({"question": question, "error": str(exc)}, ensure_ascii=False), flush=True)
            return 1
        print(json.dumps(answer.to_dict(), ensure_ascii=False) if args.json else format_answer(answer), flush=True)
        return 0

    if args.question is not None:
        return answer_one(args.question)
    status = 0
    for line in sys.stdin:
        if line.strip():  # blank lines are skipped: no output for them
            status = max(status, answer_one(line.rstrip("\r\n")))
    return status


def _cmd_bench(args: argparse.Namespace) -> int:
    from qa.tools import bench

    if args.what == "index":
        results = bench.bench_index(args.docs, copies=args.copies, variant=args.variant)
    elif args.what == "encoders":
        variants = tuple(v.strip() for v in args.variants.split(",") if v.strip()) if args.variants else None
        results = bench.bench_encoders(variants, rounds=args.rounds, recall=not args.no_recall)
    elif args.what == "query":
        results = bench.bench_query(chunks=(args.chunks or [5507])[0], threads=args.threads, variant=args.variant)
    elif args.what == "api":
        from qa.tools import bench_api

        result = bench_api.bench_api(
            clients=args.clients, seconds=args.seconds, processes=args.processes, store=args.store, faults=args.faults,
            docs=args.docs,
        )
        print(json.dumps(result) if args.json else bench_api.format_report(result))
        return 0 if result.get("faults", {}).get("all_ok", True) else 1
    elif args.what == "store":
        results = bench.bench_store(chunks=(args.chunks or [100_000])[0], url=args.url)
    elif args.what == "scale":
        if args.vectors == "real":
            if not args.texts:
                raise ValueError("bench scale --vectors real needs --texts PATH (SQuAD .json(.gz) files or folders)")
            rows = bench.bench_scale_real(args.chunks or [10_000, 50_000], args.texts, cache=args.cache, nprobes=args.nprobe)
        else:
            rows = bench.bench_scale(args.chunks or [10_000, 100_000], nprobes=args.nprobe)
        for row in rows:
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                if "note" in row:
                    print(f"note: {row.pop('note')}", flush=True)
                print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        return 0
    else:
        results = bench.bench_ask(questions=args.questions, reader=args.reader, rounds=args.rounds)
    for key, value in results.items():
        print(f"{key:32s} {value:.3f}" if isinstance(value, float) else f"{key:32s} {value}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from qa.pipeline import load_index, validate_threshold
    from qa.reader import get_reader
    from qa.tools.evaluation import evaluate, format_report, load_questions

    validate_threshold(args.threshold)
    rows = load_questions(args.questions)  # a bad file fails before anything loads
    index = load_index(args.index if args.index != config.DEFAULT_INDEX_DIR else None)
    reader = get_reader(args.reader, model=args.reader_model)
    report = evaluate(rows, index, reader=reader, top_k=args.top_k, retriever=args.retriever, threshold=args.threshold)
    report.config["questions"] = str(args.questions)
    print(json.dumps(report.to_dict(), ensure_ascii=False) if args.json else format_report(report))
    return 0


def _read_new_password() -> str:
    """A new password: one line of stdin when it is not a terminal, else prompted for twice."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line:
            raise ValueError("no password on stdin; pipe it in (e.g. printf '%s\\n' \"$PASSWORD\" | qa auth add-user ...)")
        return line.rstrip("\r\n")
    import getpass

    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        raise ValueError("the two passwords differ; nothing was changed")
    return first


def _cmd_auth(args: argparse.Namespace) -> int:
    from ui import auth

    path = args.auth_file or config.auth_file_for(args.index)
    if args.auth_command == "add-user":
        auth.validate_name(args.name)  # fail before asking for a password
        token = auth.add_user(path, args.name, args.role, _read_new_password(), replace=args.replace)
        print(f"added {args.role} {args.name!r} to {path}")
        print(f"API token of {args.name!r} (shown only now; send it as 'Authorization: Bearer TOKEN'):")
        print(token)
    elif args.auth_command == "remove-user":
        auth.remove_user(path, args.name)
        print(f"removed {args.name!r} from {path}")
    else:
        users = auth.load_users(path) if path.exists() else []
        for u in users:
            print(f"{u.name}\t{u.role}")
        print(f"{len(users)} user{'' if len(users) == 1 else 's'} in {path}", file=sys.stderr)
    return 0


COMMANDS = {
    "index": _cmd_index,
    "add": _cmd_add,
    "remove": _cmd_remove,
    "list": _cmd_list,
    "ask": _cmd_ask,
    "bench": _cmd_bench,
    "eval": _cmd_eval,
    "train-reader": _cmd_train_reader,
    "eval-reader": _cmd_eval_reader,
    "calibrate-reader": _cmd_calibrate_reader,
    "export-reader": _cmd_export_reader,
    "auth": _cmd_auth,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
