"""All sandbox state: seeded data, tokens, rate-limit windows and fault switches, behind one lock."""

import itertools
import random
import threading
import time
from collections import deque
from dataclasses import dataclass

from . import seed
from .config import DEFAULTS

V31_SHAPES = ("live", "spec")


@dataclass
class AuthorizationCode:
    code: str
    client_id: str
    user_email: str
    redirect_uri: str
    scope: str
    expires_at: float
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    used: bool = False


@dataclass
class AccessToken:
    token: str
    user_email: str
    client_id: str
    scope: str
    expires_at: float


@dataclass
class RefreshToken:
    token: str
    user_email: str
    client_id: str
    scope: str
    expires_at: float
    revoked: bool = False


class SandboxState:
    """The sandbox's in-memory world; every read and write happens under `lock`."""

    def __init__(self, config: dict | None = None):
        self.config = {**DEFAULTS, **(config or {})}
        self.lock = threading.RLock()
        self.reset()

    # ----------------------------------------------------------------- lifecycle

    def reset(self) -> None:
        """Put every record, token, counter and switch back to the seed and the configuration."""
        with self.lock:
            cfg = self.config
            if cfg["SANDBOX_V31_SHAPE"] not in V31_SHAPES:
                raise ValueError(f"SANDBOX_V31_SHAPE must be one of {', '.join(V31_SHAPES)}")
            self.clock_offset = 0.0
            self.client_id = cfg["SANDBOX_CLIENT_ID"]
            self.client_secret = cfg["SANDBOX_CLIENT_SECRET"]
            self.redirect_uris = list(cfg["SANDBOX_REDIRECT_URIS"])
            self.sage_one_api_key = cfg["SANDBOX_SAGE_ONE_API_KEY"]
            self.sage_rate_limit = cfg["SANDBOX_SAGE_RATE_LIMIT"] or None
            self.sage_daily_limit = cfg["SANDBOX_SAGE_DAILY_LIMIT"] or None
            self.sage_one_rate_limit = cfg["SANDBOX_SAGE_ONE_RATE_LIMIT"] or None
            self.sage_one_block_seconds = cfg["SANDBOX_SAGE_ONE_BLOCK_SECONDS"]
            self.latency_ms = 0
            self.error_rate = 0.0
            self.drop_rate = 0.0
            self.random = random.Random()

            self.codes: dict[str, AuthorizationCode] = {}
            self.access_tokens: dict[str, AccessToken] = {}
            self.refresh_tokens: dict[str, RefreshToken] = {}
            self.sage_windows: dict[str, deque] = {}
            self.sage_one_windows: dict[tuple, deque] = {}
            self.sage_one_blocks: dict[tuple, float] = {}
            self.counters = {"oauth": 0, "v3.1": 0, "sage_one": 0, "faults_5xx": 0, "faults_dropped": 0}
            # Totals of the per-business, per-company and per-user counts below, plus the 2.0.0 calls that
            # name no company (Company/Get), so a benchmark can print "B blocks, Q x 429" in one read.
            self.limit_counters = {"v3.1_per_minute_429": 0, "v3.1_per_day_429": 0, "sage_one_blocks": 0,
                                   "sage_one_rate_limit_429": 0, "sage_one_lockouts": 0,
                                   "sage_one_lockout_429": 0}

            self.businesses: dict[str, seed.Business] = {}
            for row in seed.SAGE_BUSINESSES:
                business = seed.build_business(*row)
                self.businesses[business.id] = business
            self.sage_users: dict[str, seed.SageUser] = {}
            for email, first, last, names in seed.SAGE_USERS:
                ids = [seed.hex_id("business", name) for name in names]
                self.sage_users[email] = seed.SageUser(seed.user_uuid(email), email, seed.PASSWORD, first, last, ids)

            self._sage_one_ids = itertools.count(seed.FIRST_SAGE_ONE_ENTITY_ID)
            self.companies: dict[int, seed.Company] = {}
            for row in seed.SAGE_ONE_COMPANIES:
                company = seed.build_company(*row, next_id=self.next_sage_one_id)
                self.companies[company.id] = company
            self.sage_one_users: dict[str, seed.SageOneUser] = {}
            for username, company_ids in seed.SAGE_ONE_USERS:
                self.sage_one_users[username] = seed.SageOneUser(username, seed.PASSWORD, list(company_ids))

    def now(self) -> float:
        """Return the sandbox clock (wall time plus any advance made by `advance_clock`)."""
        return time.time() + self.clock_offset

    def next_sage_one_id(self) -> int:
        """Return a fresh Sage One entity id; ids are unique across companies."""
        with self.lock:
            return next(self._sage_one_ids)

    # ----------------------------------------------------------------- switches

    def advance_clock(self, seconds: float) -> None:
        """Move the sandbox clock forward so codes, tokens, windows and locks age without waiting."""
        with self.lock:
            self.clock_offset += float(seconds)

    def add_redirect_uri(self, uri: str) -> None:
        """Register another exact-match OAuth redirect URI."""
        with self.lock:
            if uri not in self.redirect_uris:
                self.redirect_uris.append(uri)

    def set_latency(self, ms: int) -> None:
        """Delay every API response by `ms` milliseconds (0 turns it off)."""
        with self.lock:
            self.latency_ms = max(0, int(ms))

    def set_fault_rates(self, error_rate: float | None = None, drop_rate: float | None = None,
                        seed_value: int | None = None) -> None:
        """Set the share (0..1) of API requests answered with a 500 or with a dropped connection."""
        with self.lock:
            if error_rate is not None:
                self.error_rate = _share(error_rate)
            if drop_rate is not None:
                self.drop_rate = _share(drop_rate)
            if seed_value is not None:
                self.random.seed(seed_value)

    def expire_access_token(self, token: str) -> bool:
        """Make one access token expired now; return whether it existed."""
        with self.lock:
            record = self.access_tokens.get(token)
            if record is None:
                return False
            record.expires_at = min(record.expires_at, self.now() - 1)
            return True

    def expire_access_tokens_for_user(self, email: str) -> int:
        """Expire every access token of a Sage user; return how many were live."""
        with self.lock:
            count = 0
            for record in self.access_tokens.values():
                if record.user_email == email and record.expires_at > self.now():
                    record.expires_at = self.now() - 1
                    count += 1
            return count

    def revoke_refresh_token(self, token: str) -> bool:
        """Revoke a refresh token; return whether it existed."""
        with self.lock:
            record = self.refresh_tokens.get(token)
            if record is None:
                return False
            record.revoked = True
            return True

    def lock_sage_one_user(self, username: str, seconds: float | None = None) -> None:
        """Lock a Sage One username as the failed-login rule does (default: the configured lock-out time)."""
        with self.lock:
            user = self._sage_one_user(username)
            duration = self.config["SANDBOX_SAGE_ONE_LOCKOUT_SECONDS"] if seconds is None else seconds
            user.locked_until = self.now() + float(duration)

    def unlock_sage_one_user(self, username: str) -> None:
        """Lift a Sage One username lock and forget its failed logins."""
        with self.lock:
            user = self._sage_one_user(username)
            user.locked_until = 0.0
            user.failures.clear()

    def set_sage_one_password(self, username: str, password: str) -> None:
        """Change a Sage One user's password (as if changed on Sage's website)."""
        with self.lock:
            self._sage_one_user(username).password = password

    def set_sage_rate_limit(self, per_minute: int | None) -> None:
        """Set the v3.1 per-business limit per rolling minute; 0 or None turns it off."""
        with self.lock:
            self.sage_rate_limit = int(per_minute) if per_minute else None
            self.sage_windows.clear()

    def set_sage_daily_limit(self, per_day: int | None) -> None:
        """Set the v3.1 per-business budget per UTC day; 0 or None turns it off."""
        with self.lock:
            self.sage_daily_limit = int(per_day) if per_day else None
            for business in self.businesses.values():
                business.day, business.day_requests = -1, 0

    def set_sage_one_rate_limit(self, per_minute: int | None, block_seconds: float | None = None) -> None:
        """Set the Sage One per-company limit and block time; 0 or None turns the limit off and lifts blocks."""
        with self.lock:
            self.sage_one_rate_limit = int(per_minute) if per_minute else None
            if block_seconds is not None:
                self.sage_one_block_seconds = float(block_seconds)
            self.sage_one_windows.clear()
            self.sage_one_blocks.clear()

    def issue_tokens(self, email: str, scope: str = "full_access") -> dict:
        """Mint a token pair for a seeded Sage user without the browser dance (for in-process tests)."""
        from .oauth import issue_token_pair

        return issue_token_pair(self, email, self.client_id, scope)

    # ----------------------------------------------------------------- lookups

    def sage_user(self, email: str) -> seed.SageUser | None:
        """Return the Sage (v3.1) user with this email, if any."""
        return self.sage_users.get((email or "").strip().lower())

    def _sage_one_user(self, username: str) -> seed.SageOneUser:
        user = self.sage_one_users.get((username or "").strip().lower())
        if user is None:
            raise KeyError(f"no Sage One user {username!r}")
        return user

    # ----------------------------------------------------------------- reporting

    def snapshot(self) -> dict:
        """Return counts of what each business and company holds, plus settings and request counters."""
        with self.lock:
            now = self.now()
            return {
                "clock_offset_seconds": self.clock_offset,
                "settings": {
                    "sage_rate_limit": self.sage_rate_limit,
                    "sage_daily_limit": self.sage_daily_limit,
                    "v31_shape": self.config["SANDBOX_V31_SHAPE"],
                    "sage_one_rate_limit": self.sage_one_rate_limit,
                    "sage_one_block_seconds": self.sage_one_block_seconds,
                    "latency_ms": self.latency_ms,
                    "error_rate": self.error_rate,
                    "drop_rate": self.drop_rate,
                    "redirect_uris": list(self.redirect_uris),
                },
                "requests": dict(self.counters),
                "rate_limits": dict(self.limit_counters),
                "tokens": {
                    "live_access_tokens": sum(1 for t in self.access_tokens.values() if t.expires_at > now),
                    "live_refresh_tokens": sum(
                        1 for t in self.refresh_tokens.values() if not t.revoked and t.expires_at > now),
                },
                "businesses": {
                    b.id: {
                        "name": b.name,
                        "contacts": len(b.contacts),
                        "invoices": len(b.invoices),
                        "void_invoices": sum(1 for i in b.invoices.values() if i["status_id"] == "VOID"),
                        "requests": b.requests,
                        "busy": {"first_request_at": b.first_request_at or None,
                                 "last_request_at": b.last_request_at or None},
                        "rate_limited": {"per_minute": b.limited_per_minute, "per_day": b.limited_per_day},
                        "requests_today": b.day_requests if b.day == int(now // 86400) else 0,
                    }
                    for b in self.businesses.values()
                },
                "companies": {
                    str(c.id): {
                        "name": c.name,
                        "customers": len(c.customers),
                        "invoices": len(c.invoices),
                        "credit_notes": len(c.credit_notes),
                        "requests": c.requests,
                        "blocks": c.blocks,
                        "rate_limited": c.limited,
                        "blocked": any(until > now for key, until in self.sage_one_blocks.items() if key[1] == c.id),
                    }
                    for c in self.companies.values()
                },
                "sage_one_users": {
                    u.username: {"locked": u.locked_until > now, "recent_failures": len(u.failures),
                                 "lockouts": u.lockouts, "locked_429": u.locked_answers}
                    for u in self.sage_one_users.values()
                },
            }


def _share(value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError("a share must be between 0 and 1")
    return value
