"""Category and severity of an action, from a small static catalog.

Both are derived at ingest and stored (``LowCardinality`` columns), so that
analysts can filter "all access-control changes" or "high and above" without
knowing every action name a service invents. The catalog is deliberately
rule-based and total: an unknown action gets ``other`` / a low severity, never
an error — the event contract only constrains the *shape* of ``action``.

Category: the action's first segment through :data:`CATEGORY_BY_PREFIX`, except
that ``user.`` actions about signing in or credentials
(``user.login``, ``user.login_failed``, ``user.logout``, ``user.password_*``,
``user.mfa_*``, ``user.sso_*``) are ``authentication`` rather than
``user_management``.

Severity: see :func:`severity`.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ACTIVITY",
    "CATEGORY_BY_PREFIX",
    "SEVERITIES",
    "categorize",
    "describe",
    "severity",
    "verb_class",
]

AUTHENTICATION: Final = "authentication"
USER_MANAGEMENT: Final = "user_management"
ACCESS_CONTROL: Final = "access_control"
CONFIGURATION: Final = "configuration"
SCAN: Final = "scan"
KEY_MANAGEMENT: Final = "key_management"
EXPORT: Final = "export"
OTHER: Final = "other"

CATEGORY_BY_PREFIX: Final[dict[str, str]] = {
    "auth": AUTHENTICATION,
    "session": AUTHENTICATION,
    "mfa": AUTHENTICATION,
    "sso": AUTHENTICATION,
    "login": AUTHENTICATION,
    "user": USER_MANAGEMENT,
    "role": ACCESS_CONTROL,
    "rbac": ACCESS_CONTROL,
    "permission": ACCESS_CONTROL,
    "group": ACCESS_CONTROL,
    "access": ACCESS_CONTROL,
    "config": CONFIGURATION,
    "settings": CONFIGURATION,
    "integration": CONFIGURATION,
    "policy": CONFIGURATION,
    "scan": SCAN,
    "key": KEY_MANAGEMENT,
    "api_key": KEY_MANAGEMENT,
    "token": KEY_MANAGEMENT,
    "export": EXPORT,
}

# Second segments of user.* that are about signing in, not about managing users.
_USER_AUTH_PREFIXES: Final = ("login", "logout", "password", "mfa", "sso")

SEVERITIES: Final = ("info", "low", "medium", "high", "critical")

# Verb classes, from the last segment of the action (a failure marker removed).
READ: Final = "read"
CHANGE: Final = "change"
DESTRUCTIVE: Final = "destructive"

_READ_VERBS: Final = frozenset(
    [
        "viewed",
        "view",
        "read",
        "listed",
        "list",
        "searched",
        "search",
        "accessed",
        "access",
        "fetched",
        "queried",
        "query",
        "downloaded",
        "login",
        "logged_in",
        "logout",
        "logged_out",
        "signed_in",
        "signed_out",
        "authenticated",
        "started",
        "completed",
        "succeeded",
        "success",
        "verified",
        "checked",
    ]
)
_DESTRUCTIVE_VERBS: Final = frozenset(
    [
        "deleted",
        "delete",
        "removed",
        "remove",
        "revoked",
        "revoke",
        "disabled",
        "disable",
        "destroyed",
        "destroy",
        "purged",
        "purge",
        "wiped",
        "banned",
        "suspended",
        "locked",
        "deactivated",
        "expired",
        "terminated",
        "unassigned",
        "cancelled",
        "canceled",
        "reset",
    ]
)
_FAILURE_WORDS: Final = frozenset(
    {"failed", "failure", "denied", "rejected", "blocked", "error", "unauthorized"}
)

# Severity index (into SEVERITIES) for a successful action, by category and verb class.
#
# | category        | read   | change | destructive |
# |-----------------|--------|--------|-------------|
# | authentication  | info   | low    | medium      |
# | user_management | info   | low    | medium      |
# | access_control  | low    | medium | high        |
# | configuration   | info   | low    | medium      |
# | key_management  | low    | medium | high        |
# | export          | low    | medium | medium      |
# | scan            | info   | info   | low         |
# | other           | info   | info   | low         |
_BASE: Final[dict[str, tuple[int, int, int]]] = {
    AUTHENTICATION: (0, 1, 2),
    USER_MANAGEMENT: (0, 1, 2),
    ACCESS_CONTROL: (1, 2, 3),
    CONFIGURATION: (0, 1, 2),
    KEY_MANAGEMENT: (1, 2, 3),
    EXPORT: (1, 2, 2),
    SCAN: (0, 0, 1),
    OTHER: (0, 0, 1),
}
_VERB_COLUMN: Final = {READ: 0, CHANGE: 1, DESTRUCTIVE: 2}
# Categories where a failed attempt is itself a security signal (guessing passwords,
# probing for privileges): one step up.
_FAILURE_RAISES: Final = frozenset({AUTHENTICATION, ACCESS_CONTROL})

# Memo tables: actions are few (LowCardinality) and these run per event at 50k/s.
# Bounded so that a producer inventing a new action per event cannot grow them forever.
_MEMO_LIMIT: Final = 10_000
_category_memo: dict[str, str] = {}
_severity_memo: dict[tuple[str, str, str], str] = {}


def categorize(action: str) -> str:
    """Category of ``action`` (see the module docstring); ``other`` when the catalog does not know it."""
    try:
        return _category_memo[action]
    except KeyError:
        pass
    first, _, rest = action.partition(".")
    category = CATEGORY_BY_PREFIX.get(first, OTHER)
    if first == "user" and rest.startswith(_USER_AUTH_PREFIXES):
        category = AUTHENTICATION
    if len(_category_memo) >= _MEMO_LIMIT:
        _category_memo.clear()
    _category_memo[action] = category
    return category


def verb_class(action: str) -> tuple[str, bool]:
    """(``read`` | ``change`` | ``destructive``, failed-in-the-name) from the action's last segment.

    ``user.login_failed`` -> (read, True); ``access.denied`` -> (read, True);
    ``role.deleted`` -> (destructive, False); ``group.member_removed`` -> (destructive,
    False); unknown verbs count as ``change``.
    """
    segments = action.split(".")
    verb = segments[-1]
    failed = False
    if verb in _FAILURE_WORDS:
        # "access.denied", "role.assign.failed": the verb is the segment before, if any.
        failed = True
        verb = segments[-2] if len(segments) > 2 else "access"
    else:
        head, sep, tail = verb.rpartition("_")
        if sep and tail in _FAILURE_WORDS:  # "login_failed"
            failed, verb = True, head
    # "password_reset", "member_removed": the last word carries the verb.
    for word in (verb, verb.rpartition("_")[2]):
        if word in _READ_VERBS:
            return READ, failed
        if word in _DESTRUCTIVE_VERBS:
            return DESTRUCTIVE, failed
    return CHANGE, failed


def severity(action: str, outcome: str, category: str) -> str:
    """Severity (``info`` < ``low`` < ``medium`` < ``high`` < ``critical``) of one event.

    Start from the category/verb table (reads lowest, deletes and revokes
    highest; access control and keys one step above the rest):

    ==================  ======  ======  ===========
    category            read    change  destructive
    ==================  ======  ======  ===========
    authentication      info    low     medium
    user_management     info    low     medium
    access_control      low     medium  high
    configuration       info    low     medium
    key_management      low     medium  high
    export              low     medium  medium
    scan                info    info    low
    other               info    info    low
    ==================  ======  ======  ===========

    Then a *failure* — ``outcome == "failure"`` or a failure word in the action
    (``login_failed``, ``access.denied``) — of an ``authentication`` or
    ``access_control`` action ranks one step higher, so a failed role deletion
    is ``critical`` and a failed login ``low``. Verbs: :func:`verb_class`.
    """
    key = (action, outcome, category)
    try:
        return _severity_memo[key]
    except KeyError:
        pass
    cls, failed_in_name = verb_class(action)
    level = _BASE.get(category, _BASE[OTHER])[_VERB_COLUMN[cls]]
    if (failed_in_name or outcome == "failure") and category in _FAILURE_RAISES:
        level += 1
    result = SEVERITIES[min(level, len(SEVERITIES) - 1)]
    if len(_severity_memo) >= _MEMO_LIMIT:
        _severity_memo.clear()
    _severity_memo[key] = result
    return result


# --- activity lines for people ------------------------------------------------------

# What the viewer writes for well-known actions ("Created new scan – <resource>"). Anything
# else falls back to a sentence built from the action's own words (see ``describe``).
ACTIVITY: Final[dict[str, str]] = {
    "scan.created": "Created new scan",
    "scan.initiated": "Scan initiated",
    "scan.updated": "Updated scan",
    "scan.deleted": "Deleted scan",
    "scan.completed": "Scan completed",
    "user.login": "Signed in",
    "user.login_failed": "Failed sign-in",
    "user.logout": "Signed out",
    "user.password_changed": "Changed password",
    "user.password_reset": "Reset password",
    "user.created": "Created user",
    "user.invited": "Invited user",
    "user.updated": "Updated user",
    "user.deleted": "Deleted user",
    "user.disabled": "Disabled user",
    "role.assigned": "Assigned role",
    "role.revoked": "Revoked role",
    "key.created": "Created API key",
    "key.revoked": "Revoked API key",
    "key.rotated": "Rotated API key",
    "config.updated": "Updated configuration",
    "export.created": "Created export",
    "export.downloaded": "Downloaded export",
    "access.denied": "Access denied",
}


def describe(action: str, resource_name: str = "", resource_id: str = "") -> str:
    """A human-readable activity line: ``Created new scan – Azure Cloud Workload``.

    Known actions read from :data:`ACTIVITY`; an unknown one becomes its words
    (``invoice.sent`` -> ``Invoice sent``), so nothing ever renders blank. The
    resource's name (or id) follows a dash when there is one.
    """
    text = ACTIVITY.get(action)
    if text is None:
        words = action.replace("_", " ").replace(".", " ").split()
        text = " ".join(words).capitalize() if words else action
    target = resource_name or resource_id
    return f"{text} – {target}" if target else text
