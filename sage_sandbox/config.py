"""Configuration defaults for the Sage sandbox."""

DEFAULTS = {
    "SANDBOX_CLIENT_ID": "portal-dev-client",
    "SANDBOX_CLIENT_SECRET": "portal-dev-secret",
    "SANDBOX_REDIRECT_URIS": [
        "http://127.0.0.1:5000/integrations/sage/callback",
        "http://localhost:5000/integrations/sage/callback",
    ],
    "SANDBOX_SAGE_ONE_API_KEY": "portal-dev-apikey",
    # Rate limits: requests per rolling minute; 0 or None turns the limit off.
    "SANDBOX_SAGE_RATE_LIMIT": 100,
    # The v3.1 limit's rolling window (Sage's minute); tests shorten it to see it turn over.
    "SANDBOX_SAGE_RATE_WINDOW_SECONDS": 60,
    # v3.1 requests per business per UTC day (renews at midnight); 0 or None = off, because Sage's number is
    # unverified (2,500 a day is one reading).
    "SANDBOX_SAGE_DAILY_LIMIT": 0,
    "SANDBOX_SAGE_ONE_RATE_LIMIT": 100,
    "SANDBOX_SAGE_ONE_BLOCK_SECONDS": 3600,
    "SANDBOX_SAGE_ONE_LOCKOUT_FAILURES": 20,
    "SANDBOX_SAGE_ONE_LOCKOUT_SECONDS": 86400,
    "SANDBOX_ACCESS_TOKEN_SECONDS": 300,
    "SANDBOX_REFRESH_TOKEN_SECONDS": 2678400,
    "SANDBOX_CODE_SECONDS": 60,
    # Where Sage's published specification and the live API differ, the live behaviour is the default.
    # "live": decimal strings ("10.0") for money, quantities, rates and percentages, explicit nulls;
    # "spec": JSON numbers and null members left out, as the published schema has them.
    "SANDBOX_V31_SHAPE": "live",
    # The optional X-RequestLimit-ExceededReason header on a 2.0.0 rate-limit 429 (some clients read it).
    "SANDBOX_SAGE_ONE_EXCEEDED_REASON_HEADER": True,
    # Behaviours the reference marks as guessed; each default is the most plausible reading.
    "SANDBOX_INVOICE_DEFAULT_STATUS": "UNPAID",
    "SANDBOX_VOID_STATUS_CODE": 200,
    "SANDBOX_VOID_DRAFT_DELETES": False,
    "SANDBOX_REQUIRE_X_BUSINESS": False,
    "SANDBOX_SAGE_ONE_REQUIRE_CONTENT_TYPE": True,
    "SANDBOX_SAGE_ONE_ERROR_FORMAT": "message",
    "SANDBOX_SAGE_ONE_ALLOW_INVOICE_DELETE": False,
    "SANDBOX_SAGE_ONE_MISSING_APIKEY_STATUS": 403,
    "SANDBOX_SAGE_ONE_WRONG_APIKEY_STATUS": 401,
}

