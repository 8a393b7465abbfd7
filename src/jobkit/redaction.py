"""Credentials masked out of text bound for output: a password in a database URL (or any other
URL or conninfo string) never reaches an error message, a log line, a result or a span."""

from __future__ import annotations

import re
import urllib.parse

MASK = "***"
"""What a password is replaced with."""

_USERINFO = re.compile(r"(?<![^\s/@'\"])(?P<user>[^\s:/@'\"]*+):(?!/)(?P<password>[^\s@'\"]++)@")
"""``user:password@`` in a URL, also in a malformed one (``postgres:/user:secret@host``); the
``(?!/)`` keeps ``postgresql://user@host``, which has no password, as it is. A match starts only
where a user name can (at the start of a word or after ``/``) and never backtracks, so masking
stays linear in the text's length: every error text a job raises goes through it."""
_KEYWORD = re.compile(
    r"(?P<key>\b\w*password\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'?|[^\s&'\"]+)", re.IGNORECASE
)
"""``password=...`` (and ``sslpassword=``, ``PGPASSWORD=``) in a key/value conninfo string,
quoted or not, or in a URL's query string."""
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
_QUOTED = re.compile(r'"([^"]+)"')


def redact_credentials(text: str, *sources: str | None) -> str:
    """``text`` with every password in it replaced by ``***``: a URL's ``user:password@``, a
    conninfo's or a query string's ``password=``.

    ``sources`` are the URLs or conninfo strings that ``text`` may quote pieces of, as libpq's
    parse errors do (``unexpected spaces found in "pass word"``, ``invalid percent-encoded
    token: "%zz"``): their passwords, and any double-quoted piece of one, are masked wherever
    they appear in ``text``. Give them only for such messages: a password that is also a
    common word (``postgres``) would be masked everywhere else in the text too.
    """
    if not sources and "@" not in text and "=" not in text:
        return text  # the common case, every successful job's empty error included: no copy
    secrets = {secret for source in sources if source for secret in _passwords_in(source)}
    if secrets:
        text = _QUOTED.sub(
            lambda match: f'"{MASK}"' if any(match[1] in s for s in secrets) else match[0], text
        )
        for secret in sorted(secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
    # The patterns run only where they can match: a job's error may be hundreds of megabytes,
    # and a pattern costs 50 times what a plain search does.
    if "@" in text:
        text = _USERINFO.sub(lambda match: f"{match['user']}:{MASK}@", text)
    if "=" in text and "password" in text.lower():
        text = _KEYWORD.sub(lambda match: f"{match['key']}{MASK}", text)
    return text


def _passwords_in(source: str) -> set[str]:
    """The passwords ``source`` holds, as written and percent-decoded."""
    written = [match["value"].strip("'") for match in _KEYWORD.finditer(source)]
    scheme = _SCHEME.match(source)
    if scheme is not None:
        # Loosely, so that a malformed URL's password is found too: the userinfo is what
        # comes before the last "@" ahead of the query, so it may hold "/", ":" or spaces.
        before_query = re.split(r"[?#]", source[scheme.end() :], maxsplit=1)[0]
        userinfo, at, _ = before_query.lstrip("/").rpartition("@")
        if at:
            written.append(userinfo.partition(":")[2])
    return {
        form
        for password in written
        if password
        for form in (password, urllib.parse.unquote(password))
    }
