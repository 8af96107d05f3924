"""Sign-in (ui.auth): the credentials file, its CLI, and who may serve without it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from qa import config
from ui import auth
from ui.auth import AuthFileError, AuthStore, add_user, check_exposure, is_loopback, load_users, remove_user

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "QA_AUTH_FILE"}
    return {**env, **extra}


def _qa(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "qa", *args], input=stdin, capture_output=True, text=True, timeout=120, cwd=ROOT, env=_env(**env)
    )


def test_the_file_holds_hashes_only_is_private_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    token = add_user(path, "alice", "editor", "correct horse battery")
    text = path.read_text(encoding="utf-8")
    assert "correct horse battery" not in text and token not in text
    raw = json.loads(text)
    assert raw["format"] == "qa-auth" and raw["version"] == 1
    user = raw["users"][0]
    assert user["name"] == "alice" and user["role"] == "editor"
    assert user["password"]["algorithm"] == "scrypt" and {"n", "r", "p", "salt", "hash"} <= set(user["password"])
    assert user["token_sha256"] == auth.hash_token(token) and len(token) >= 43
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # written atomically, no leftovers

    # Same password, another user: another salt, another hash.
    add_user(path, "bob", "viewer", "correct horse battery")
    bob = json.loads(path.read_text())["users"][1]
    assert bob["password"]["salt"] != user["password"]["salt"] and bob["password"]["hash"] != user["password"]["hash"]


def test_passwords_and_tokens_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    token = add_user(path, "alice", "editor", "correct horse battery")
    viewer_token = add_user(path, "vic", "viewer", "viewer-password")
    store = AuthStore(path)
    assert store.check_password("alice", "correct horse battery").role == "editor"
    for name, password in [("alice", "wrong password"), ("alice", ""), ("nobody", "correct horse battery"), (None, "x"), ("alice", None)]:
        assert store.check_password(name, password) is None
    assert store.check_token(token).name == "alice" and store.check_token(viewer_token).role == "viewer"
    for bad in ("", token + "x", token[:-1], auth.hash_token(token), None):
        assert store.check_token(bad) is None
    assert store.role_of("vic") == "viewer" and store.role_of("nobody") is None and store.role_of(None) is None


def test_bad_names_roles_and_passwords_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    with pytest.raises(ValueError, match="not allowed"):
        add_user(path, "../evil", "viewer", "long enough password")
    with pytest.raises(ValueError, match="role"):
        add_user(path, "alice", "admin", "long enough password")
    with pytest.raises(ValueError, match="too short"):
        add_user(path, "alice", "viewer", "short")
    add_user(path, "alice", "viewer", "long enough password")
    with pytest.raises(ValueError, match="already exists"):
        add_user(path, "alice", "editor", "long enough password")
    add_user(path, "alice", "editor", "another password", replace=True)
    assert [(u.name, u.role) for u in load_users(path)] == [("alice", "editor")]
    with pytest.raises(ValueError, match="no user 'bob'"):
        remove_user(path, "bob")


def test_other_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"format": "qa-auth", "version": 2, "users": []}))
    with pytest.raises(AuthFileError, match="version"):
        load_users(path)
    path.write_text("{not json")
    with pytest.raises(AuthFileError, match="not valid JSON"):
        auth.open_auth(path)
    path.write_text(json.dumps({"format": "other"}))
    with pytest.raises(AuthFileError, match="not a qa-auth"):
        load_users(path)
    assert auth.open_auth(tmp_path / "missing.json") is None


def test_a_running_store_follows_the_file_and_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    add_user(path, "alice", "editor", "correct horse battery")
    store = AuthStore(path)
    token = add_user(path, "bob", "viewer", "bob's password")  # added while it runs
    assert store.check_token(token).name == "bob"
    remove_user(path, "bob")
    assert store.check_token(token) is None
    path.unlink()  # the file goes away: nobody gets in
    assert store.users() == [] and store.check_password("alice", "correct horse battery") is None
    assert store.users() == []


@pytest.mark.parametrize("users", [5, "alice", {"name": "alice"}])
def test_a_users_entry_that_is_not_a_list_is_the_files_error_not_a_traceback(tmp_path: Path, users: object) -> None:
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"format": "qa-auth", "version": 1, "users": users}))
    with pytest.raises(AuthFileError, match="not a list"):
        load_users(path)


def test_default_location_is_beside_the_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "AUTH_FILE", None)
    assert config.auth_file_for(tmp_path / "indexes" / "seeds") == (tmp_path / "indexes" / "auth.json").resolve()
    monkeypatch.chdir(tmp_path)
    assert config.auth_file_for("postgresql://u:p@db/qa") == tmp_path / "auth.json"
    monkeypatch.setattr(config, "AUTH_FILE", tmp_path / "elsewhere.json")
    assert config.auth_file_for(tmp_path / "indexes" / "seeds") == tmp_path / "elsewhere.json"


# --------------------------------------------------------------------------- the CLI


def test_cli_add_user_reads_the_password_from_stdin_and_prints_the_token_last(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    out = _qa("auth", "add-user", "alice", "--role", "editor", "--auth-file", str(path), stdin="s3cret password\n")
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip().splitlines()[-1]
    assert AuthStore(path).check_token(token).name == "alice"
    assert AuthStore(path).check_password("alice", "s3cret password") is not None
    assert "s3cret password" not in out.stdout + out.stderr + path.read_text() and token not in path.read_text()


def _main(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """``qa ARGS`` in this process (faster than a subprocess), with ``stdin`` as a pipe."""
    import io

    from qa.tools.cli import main

    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_auth_commands(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "auth.json")
    code, out, _ = _main(capsys, monkeypatch, "auth", "add-user", "alice", "--role", "editor", "--auth-file", path, stdin="a long password\n")
    assert code == 0 and AuthStore(path).check_token(out.strip().splitlines()[-1]).role == "editor"
    code, _, err = _main(capsys, monkeypatch, "auth", "add-user", "alice", "--role", "viewer", "--auth-file", path, stdin="other password\n")
    assert code == 1 and err.startswith("error:") and "already exists" in err
    code, _, err = _main(capsys, monkeypatch, "auth", "add-user", "bob", "--role", "viewer", "--auth-file", path, stdin="short\n")
    assert code == 1 and "too short" in err and "short\n" not in err
    code, _, err = _main(capsys, monkeypatch, "auth", "add-user", "bob", "--role", "viewer", "--auth-file", path, stdin="")
    assert code == 1 and "no password on stdin" in err
    with pytest.raises(SystemExit):
        _main(capsys, monkeypatch, "auth", "add-user", "bob", "--role", "admin", "--auth-file", path, stdin="long password\n")

    code, out, err = _main(capsys, monkeypatch, "auth", "list", "--auth-file", path)
    assert code == 0 and out == "alice\teditor\n" and "1 user in" in err
    assert _main(capsys, monkeypatch, "auth", "remove-user", "alice", "--auth-file", path)[0] == 0
    assert _main(capsys, monkeypatch, "auth", "list", "--auth-file", path)[1] == ""
    code, _, err = _main(capsys, monkeypatch, "auth", "remove-user", "alice", "--auth-file", path)
    assert code == 1 and "no user 'alice'" in err


def test_cli_uses_qa_auth_file(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "team.json"
    monkeypatch.setattr(config, "AUTH_FILE", path)  # what QA_AUTH_FILE sets
    assert _main(capsys, monkeypatch, "auth", "add-user", "vic", "--role", "viewer", stdin="viewer password\n")[0] == 0
    assert [u.name for u in load_users(path)] == ["vic"]


def test_password_is_never_an_argument() -> None:
    from qa.tools.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["auth", "add-user", "alice", "--role", "editor", "--password", "x"])


# --------------------------------------------------------------------------- who may serve without sign-in


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("example.org", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_non_loopback_needs_sign_in_or_an_explicit_no_auth(tmp_path: Path) -> None:
    assert check_exposure("127.0.0.1", None) is None
    with pytest.raises(ValueError, match="refusing to serve on 0.0.0.0.*--no-auth"):
        check_exposure("0.0.0.0", None)
    assert "WITHOUT sign-in" in check_exposure("0.0.0.0", None, no_auth=True)
    add_user(tmp_path / "auth.json", "alice", "editor", "long enough password")
    assert check_exposure("0.0.0.0", AuthStore(tmp_path / "auth.json")) is None


def test_python_m_ui_refuses_a_public_host_without_sign_in(tmp_path: Path) -> None:
    index = tmp_path / "index"
    index.mkdir()
    out = subprocess.run(
        [sys.executable, "-m", "ui", "--host", "0.0.0.0", "--port", "1", "--index", str(index)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=_env(),
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "refusing to serve on 0.0.0.0" in out.stderr and "qa auth add-user" in out.stderr and "--no-auth" in out.stderr
    # A broken credentials file is an error too, not "no sign-in".
    (tmp_path / "auth.json").write_text("{broken")
    out = subprocess.run(
        [sys.executable, "-m", "ui", "--host", "127.0.0.1", "--port", "1", "--index", str(index)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=_env(),
    )
    assert out.returncode == 1 and "not valid JSON" in out.stderr


def test_ui_help_lists_the_auth_flags() -> None:
    from ui.__main__ import build_parser

    args = build_parser().parse_args([])
    assert args.no_auth is False and args.auth_file is None and args.host == "127.0.0.1"
    help_text = build_parser().format_help()
    assert "--no-auth" in help_text and "--auth-file" in help_text


def test_an_open_server_says_where_it_looked_for_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Started from another folder than `qa auth add-user`, a server would be open unawares."""
    import ui.app
    from ui.__main__ import main

    monkeypatch.setattr(ui.app, "build_app", lambda *a, **k: object())
    monkeypatch.setattr(ui.app, "launch", lambda *a, **k: None)
    missing = tmp_path / "elsewhere" / "auth.json"
    assert main(["--index", str(tmp_path / "idx"), "--auth-file", str(missing)]) == 0
    assert f"no sign-in (no credentials file at {missing.resolve()})" in capsys.readouterr().out
    assert main(["--index", str(tmp_path / "idx"), "--no-auth"]) == 0
    assert "no sign-in (--no-auth)" in capsys.readouterr().out
