"""Sign-in for the chat and the HTTP API: users with roles, stored in a credentials file.

The file (``qa.config.auth_file_for``: ``QA_AUTH_FILE``, else ``auth.json`` beside the index
directory) is JSON, written atomically with mode 0600::

    {"format": "qa-auth", "version": 1,
     "users": [{"name": "alice", "role": "editor",
                "password": {"algorithm": "scrypt", "n": 16384, "r": 8, "p": 1, "dklen": 32,
                             "salt": "<base64>", "hash": "<base64>"},
                "token_sha256": "<hex>"}]}

No secret is stored in clear: a password is kept as its salted scrypt hash, an API token
(``secrets.token_urlsafe(32)``, shown once by ``qa auth add-user``) as its SHA-256. Roles:
``viewer`` (ask, list documents, health) and ``editor`` (also upload and remove documents).
Every comparison of secrets is constant-time (:func:`hmac.compare_digest`).

Manage users with ``qa auth add-user NAME --role viewer|editor``, ``qa auth remove-user NAME``
and ``qa auth list``. A running server re-reads the file when it changes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import ipaddress
import json
import math
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from qa import config

FORMAT = "qa-auth"
VERSION = 1
ROLES = ("viewer", "editor")
#: scrypt cost: 2**14 x 8 -> 16 MiB and ~50 ms per check (OWASP's minimum for scrypt).
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_DKLEN = 32
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


class AuthFileError(ValueError):
    """The credentials file is unreadable, not a qa-auth file, or of another version."""


@dataclass(frozen=True)
class User:
    """A user as stored: name, role and the hashes (never the secrets themselves)."""

    name: str
    role: str
    password: dict
    token_sha256: str

    @property
    def can_edit(self) -> bool:
        return self.role == "editor"


# --------------------------------------------------------------------------- hashing


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=256 * 1024 * 1024)


def hash_password(password: str) -> dict:
    """The stored form of ``password``: a fresh 16-byte salt, the scrypt parameters and the hash."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN)
    return {"algorithm": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "dklen": SCRYPT_DKLEN,
            "salt": _b64(salt), "hash": _b64(digest)}


def verify_password(password: str, stored: dict) -> bool:
    """True when ``password`` matches ``stored`` (constant-time comparison)."""
    try:
        if stored.get("algorithm") != "scrypt":
            return False
        salt = base64.b64decode(stored["salt"])
        expected = base64.b64decode(stored["hash"])
        digest = _scrypt(password, salt, int(stored["n"]), int(stored["r"]), int(stored["p"]), int(stored.get("dklen", len(expected))))
    except (KeyError, TypeError, ValueError):
        return False
    return hmac.compare_digest(digest, expected)


#: Checked against when a name is unknown, so a wrong name costs the same time as a wrong password.
_DUMMY_HASH = {"algorithm": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "dklen": SCRYPT_DKLEN,
               "salt": _b64(b"\0" * 16), "hash": _b64(b"\0" * SCRYPT_DKLEN)}


def hash_token(token: str) -> str:
    """The stored form of an API token: its SHA-256, hex (the token has 256 random bits)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A new API token: 32 random bytes, URL-safe base64."""
    return secrets.token_urlsafe(32)


# --------------------------------------------------------------------------- the file


def validate_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"user name {name!r} is not allowed; use 1-64 letters, digits and . _ @ - (starting with a letter or digit)"
        )
    return name


def validate_role(role: object) -> str:
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return str(role)


def validate_password(password: object) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"the password is too short; use at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValueError(f"the password is too long; use at most {MAX_PASSWORD_CHARS} characters")
    return password


def load_users(path: str | os.PathLike[str]) -> list[User]:
    """The users of the credentials file at ``path``.

    Raises:
        FileNotFoundError: no file there.
        AuthFileError: unreadable JSON, another format or version, or a malformed user.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise AuthFileError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); fix or delete it") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise AuthFileError(f"{path} is not a qa-auth credentials file")
    if raw.get("version") != VERSION:
        raise AuthFileError(f"{path} is qa-auth version {raw.get('version')!r}; this program reads version {VERSION}")
    listed = raw.get("users")
    if listed is not None and not isinstance(listed, list):
        raise AuthFileError(f"{path}: \"users\" is not a list; fix it, or delete the file and add the users again")
    users = []
    for n, entry in enumerate(listed or []):
        try:
            users.append(
                User(validate_name(entry["name"]), validate_role(entry["role"]), dict(entry["password"]), str(entry["token_sha256"]))
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AuthFileError(f"{path}: user #{n + 1} is malformed ({type(exc).__name__})") from None
    return users


def _write(path: Path, users: list[User]) -> None:
    """Replace the file atomically (temporary file in the same folder, fsync, rename), mode 0600."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "users": [{"name": u.name, "role": u.role, "password": u.password, "token_sha256": u.token_sha256} for u in users],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    os.chmod(path, 0o600)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialize read-modify-write of the file between processes (a ``.lock`` beside it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            import fcntl
        except ImportError:  # not POSIX: no inter-process lock
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def add_user(path: str | os.PathLike[str], name: str, role: str, password: str, *, replace: bool = False) -> str:
    """Add (or with ``replace``, replace) user ``name`` in the file at ``path`` (created if
    missing); returns the user's new API token, which is not stored and cannot be shown again."""
    path = Path(path)
    validate_name(name)
    validate_role(role)
    validate_password(password)
    token = new_token()
    user = User(name, role, hash_password(password), hash_token(token))
    with _locked(path):
        users = load_users(path) if path.exists() else []
        if any(u.name == name for u in users) and not replace:
            raise ValueError(f"user {name!r} already exists in {path}; remove it first or pass --replace")
        _write(path, [u for u in users if u.name != name] + [user])
    return token


def remove_user(path: str | os.PathLike[str], name: str) -> None:
    """Remove user ``name`` from the file at ``path``."""
    path = Path(path)
    with _locked(path):
        if not path.exists():
            raise ValueError(f"no credentials file at {path}; add a user first with: qa auth add-user NAME --role viewer")
        users = load_users(path)
        if not any(u.name == name for u in users):
            raise ValueError(f"no user {name!r} in {path} ({len(users)} users)")
        _write(path, [u for u in users if u.name != name])


# --------------------------------------------------------------------------- checking


class AuthStore:
    """The users of a credentials file, for a running server: re-read when the file changes
    (``qa auth add-user`` while it runs takes effect at the next request). If the file goes
    away or becomes unreadable, nobody is let in (it fails closed) until it is fixed."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._users: list[User] = []
        self._loaded = False
        self.users()  # a missing or broken file fails here, at start-up

    def _current_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def users(self) -> list[User]:
        """The current users (re-read when the file changed)."""
        stamp = self._current_stamp()
        with self._lock:
            if self._loaded and stamp == self._stamp:
                return self._users
            try:
                if stamp is None:
                    raise FileNotFoundError(f"no credentials file at {self.path}")
                users = load_users(self.path)
            except (OSError, AuthFileError):
                if not self._loaded:
                    raise  # at start-up: say what is wrong
                users = []  # later: fail closed until the file is fixed
            self._users, self._stamp, self._loaded = users, stamp, True
            return users

    def check_password(self, name: object, password: object) -> User | None:
        """The user when ``name`` and ``password`` match, else ``None`` (same cost either way)."""
        if not isinstance(name, str) or not isinstance(password, str) or len(password) > MAX_PASSWORD_CHARS:
            return None
        user = next((u for u in self.users() if hmac.compare_digest(u.name.encode(), name.strip().encode())), None)
        ok = verify_password(password, user.password if user is not None else _DUMMY_HASH)
        return user if ok and user is not None else None

    def check_token(self, token: object) -> User | None:
        """The user whose API token this is, else ``None``."""
        if not isinstance(token, str) or not token or len(token) > 512:
            return None
        digest = hash_token(token)
        found = None
        for u in self.users():  # every hash compared, constant-time
            if hmac.compare_digest(u.token_sha256.encode(), digest.encode()):
                found = u
        return found

    def role_of(self, name: object) -> str | None:
        """The role of the user called ``name`` (``None``: no such user)."""
        if not isinstance(name, str):
            return None
        user = next((u for u in self.users() if u.name == name), None)
        return None if user is None else user.role

    def credential_stamp(self, name: object) -> str | None:
        """What changes when user ``name``'s password is set again (a digest of its salted hash),
        ``None`` when there is no such user: a sign-in made before either no longer counts."""
        if not isinstance(name, str):
            return None
        user = next((u for u in self.users() if u.name == name), None)
        if user is None:
            return None
        return hashlib.sha256(json.dumps(user.password, sort_keys=True).encode()).hexdigest()


class SignIns(dict):
    """The chat's signed-in sessions (Gradio's ``app.tokens``: cookie token -> user name) that end
    when their user is removed or their password is set again (``qa auth remove-user``,
    ``add-user --replace`` after a leak), not only when the server restarts: each token keeps
    the user's :meth:`AuthStore.credential_stamp` from its sign-in, and a lookup whose stamp no
    longer matches forgets the token (the browser is asked to sign in again). A sign-in also
    ends ``max_age_s`` seconds after it was made (:data:`qa.config.SIGNIN_MAX_AGE_S`)."""

    def __init__(self, auth: AuthStore, max_age_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._auth = auth
        self._max_age_s = config.SIGNIN_MAX_AGE_S if max_age_s is None else max_age_s
        self._clock = clock
        self._stamps: dict[str, tuple[str | None, float]] = {}

    def __setitem__(self, token: str, name: str) -> None:
        # Set right after the password was checked: the stamp of the credentials it was checked against.
        now = self._clock()
        for old in [t for t, (_, made) in self._stamps.items() if now - made > self._max_age_s]:
            self._forget(old)  # expired sign-ins never looked up again would stay forever
        self._stamps[token] = (self._auth.credential_stamp(name), now)
        super().__setitem__(token, name)

    def __delitem__(self, token: str) -> None:
        self._stamps.pop(token, None)
        super().__delitem__(token)

    def _forget(self, token: object) -> None:
        self.pop(token, None)
        self._stamps.pop(token, None)  # type: ignore[arg-type]

    def get(self, token: object, default: object = None) -> object:
        name = super().get(token)  # type: ignore[call-overload]
        if name is None:
            return default
        stamp = self._auth.credential_stamp(name)
        kept, made = self._stamps.get(token, (None, -math.inf))  # type: ignore[call-overload]
        if stamp is None or not hmac.compare_digest(stamp, kept or "") or self._clock() - made > self._max_age_s:
            self._forget(token)
            return default
        return name


def open_auth(path: str | os.PathLike[str] | None) -> AuthStore | None:
    """An :class:`AuthStore` over ``path`` when a file is there, else ``None`` (no sign-in).

    Raises:
        AuthFileError: a file is there but it cannot be used.
    """
    if path is None or not Path(path).exists():
        return None
    try:
        return AuthStore(path)
    except OSError as exc:
        raise AuthFileError(f"cannot read the credentials file {path}: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------- exposure


def is_loopback(host: str) -> bool:
    """True when ``host`` is this machine only (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # another host name: reachable from elsewhere, as far as we know


def check_exposure(host: str, auth: object, *, no_auth: bool = False) -> str | None:
    """Whether serving on ``host`` with ``auth`` (an :class:`AuthStore` or ``None``) is allowed.

    Returns ``None`` when fine, or a warning to log (``no_auth`` on a non-loopback address).

    Raises:
        ValueError: a non-loopback address without a credentials file and without ``no_auth``.
    """
    if auth is not None or is_loopback(host):
        return None
    if no_auth:
        return (
            f"serving on {host} WITHOUT sign-in (--no-auth): anyone who can reach this address can ask, "
            "upload and remove documents"
        )
    raise ValueError(
        f"refusing to serve on {host} (reachable from other machines) without sign-in: create users with "
        "`qa auth add-user NAME --role editor` (credentials file: QA_AUTH_FILE, default auth.json beside the index), "
        "or pass --no-auth to serve without sign-in anyway"
    )


__all__ = [
    "ROLES",
    "AuthFileError",
    "AuthStore",
    "User",
    "add_user",
    "check_exposure",
    "hash_password",
    "hash_token",
    "is_loopback",
    "load_users",
    "open_auth",
    "remove_user",
    "verify_password",
]
