"""The development keys ``auditstream run`` prints: created once, kept in the data folder.

``make run`` used to mint a reader and an admin key on every start, so the key table
grew by two live keys per restart and none of them was in the audit log. Now the
keys (plaintext tokens, since they are printed for copy and paste) are written once to
``<data_dir>/demo-keys.json`` (0600, owner only) and reused on later starts as long as
they still verify: a key revoked with ``auditstream keys revoke``, or a key file that
was deleted, gets a new key in its place.

Each key is audited like any other (``key.created`` in its tenant, through
:mod:`auditstream.api.audit_trail`). The file remembers which keys were recorded, so
a start whose broker did not take the event records it on the next start instead of
never.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from auditstream.api.keys import ApiKey, KeyStore, Role
from auditstream.private_fs import private_file, write_private

__all__ = ["DEMO_KEYS_FILE", "DEMO_ROLES", "DemoKey", "DemoKeys"]

DEMO_KEYS_FILE = "demo-keys.json"
DEMO_ROLES: tuple[Role, ...] = (Role.READER, Role.ADMIN)
_VERSION = 1


@dataclass(slots=True)
class DemoKey:
    tenant_id: str
    role: str
    key_id: str
    token: str
    name: str
    audited: bool = False


class DemoKeys:
    """The demo key file next to the key store."""

    def __init__(self, path: Path, keys: KeyStore) -> None:
        self.path = Path(path)
        self.keys = keys
        self._entries: list[DemoKey] = self._load()

    def _load(self) -> list[DemoKey]:
        try:
            doc = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return []
        except (OSError, orjson.JSONDecodeError):
            return []  # unreadable or damaged: new keys replace it (the old ones stay revocable)
        private_file(self.path)  # a copy from before this change may have the umask's mode
        if not isinstance(doc, dict) or doc.get("version") != _VERSION:
            return []
        entries = []
        for item in doc.get("keys") or []:
            try:
                entries.append(DemoKey(**item))
            except TypeError:
                continue
        return entries

    def _save(self) -> None:
        doc: dict[str, Any] = {"version": _VERSION, "keys": [asdict(e) for e in self._entries]}
        write_private(self.path, orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")

    def ensure(self, tenant_id: str, roles: tuple[Role, ...] = DEMO_ROLES) -> dict[Role, DemoKey]:
        """One working key per role for ``tenant_id``: the saved one if it still verifies, else a new one."""
        out: dict[Role, DemoKey] = {}
        changed = False
        for role in roles:
            entry = self._find(tenant_id, role)
            if entry is not None and not self._usable(entry):
                self._entries.remove(entry)
                entry = None
            if entry is None:
                new = self.keys.create(tenant_id, role, name=f"make run: development {role.value}")
                entry = DemoKey(tenant_id, role.value, new.key.key_id, new.token, new.key.name)
                self._entries.append(entry)
                changed = True
            out[role] = entry
        if changed:
            self._save()
        return out

    def _find(self, tenant_id: str, role: Role) -> DemoKey | None:
        for entry in self._entries:
            if entry.tenant_id == tenant_id and entry.role == role.value:
                return entry
        return None

    def _usable(self, entry: DemoKey) -> bool:
        key = self.keys.verify(entry.token)
        return key is not None and key.tenant_id == entry.tenant_id and key.role.value == entry.role

    def unaudited(self) -> list[ApiKey]:
        """Keys whose ``key.created`` event is not yet in the audit log."""
        out = []
        for entry in self._entries:
            if not entry.audited:
                key = self.keys.get(entry.key_id)
                if key is not None:
                    out.append(key)
        return out

    def mark_audited(self, key_ids: list[str]) -> None:
        for entry in self._entries:
            if entry.key_id in key_ids:
                entry.audited = True
        self._save()
