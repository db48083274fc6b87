"""The troubleshooting scenarios, as data: the four from PRODUCT.md and the common ones the data shows.

Slugs are stable: pages link to them (the Sage One AUS page links to `sage-one-aus-puppet-auth`).
Messages are formatted with the evidence the run's checks saw, plus {business}, {branch},
{invoice_number}.
"""
from __future__ import annotations

from portal.checklists.engine import ACTION, CHECK, OUTCOME, QUESTION, Scenario, Step

RESOLVED, CUSTOMER_ACTION, ESCALATED = "resolved", "customer_action", "escalated"
YES_NO = (("yes", "Yes"), ("no", "No"))

SAGE_ONE_AUS_PUPPET_AUTH = Scenario(
    slug="sage-one-aus-puppet-auth",
    title="Can't authenticate Sage One AUS while puppeted",
    summary="Blocked by design: Sage One AUS signs in with the customer's own login, which only they can unlock. "
            "Guide the customer through authenticating themselves.",
    provider="sage_one_aus",
    steps=(
        Step("branch", CHECK, "Is the branch on Sage One AUS?", check="branch_on_sage_one_aus",
             next={"fail": "wrong_provider"}),
        Step("puppet", CHECK, "Are you in a puppet session?", check="puppet_session",
             help="In a puppet session the portal never holds the customer's key, so Sage One AUS can't be "
                  "authenticated — whatever the page or request looks like."),
        Step("state", CHECK, "What state is the connection in?", check="sage_one_connection_state"),
        Step("can_sign_in", QUESTION, "Can the customer sign in to the portal themselves?", choices=YES_NO,
             next={"yes": "guide_customer", "no": "escalate_access"}),
        Step("guide_customer", OUTCOME, "Send the customer the steps to authenticate", outcome=CUSTOMER_ACTION,
             message=(
                 "Hello,\n\nFor your security, Sage One AUS can only be connected by you: it uses your own Sage One "
                 "login, which our support team can't enter or unlock on your behalf.\n\n"
                 "1. Sign in to the portal with your own email and password.\n"
                 "2. On the Branches page, find {branch}.\n"
                 "3. Choose \"Connect Sage One AUS\" and enter your Sage One username and password"
                 " (this branch was last connected as {username}).\n"
                 "4. If you have more than one Sage One company, pick the one for {branch}.\n\n"
                 "Once it shows Connected, your sync will run as usual. Reply to this message if anything looks "
                 "different.")),
        Step("escalate_access", OUTCOME, "Escalate: the customer can't sign in", outcome=ESCALATED,
             message="The customer of {business} can't sign in to the portal to authenticate Sage One AUS for "
                     "{branch}; their portal access needs fixing first."),
        Step("wrong_provider", OUTCOME, "Not a Sage One AUS branch", outcome=RESOLVED,
             message="{branch} is connected to {provider}, not Sage One AUS; use the Sage checklists instead."),
    ),
)

SAGE_MASS_RESYNC = Scenario(
    slug="sage-mass-resync",
    title="Sage sync is uploading all contacts again",
    summary="No contact had a Sage id (usually after a disconnect and reconnect), so every contact was flagged "
            "for re-sync. Expected: let it finish in batches.",
    provider="sage",
    steps=(
        Step("flagged", CHECK, "Were all contacts flagged because none had a Sage id?", check="mass_resync_flagged",
             next={"fail": "not_mass_resync"}),
        Step("changed", CHECK, "When did the connection last change?", check="connection_changed", mandatory=False),
        Step("progress", CHECK, "How far is it, and when will it end?", check="contact_sync_progress",
             next={"pass": "expected", "warn": "failures_reviewed", "fail": "rerun"}),
        Step("failures_reviewed", QUESTION, "Do the failed contacts have a reason the customer can fix (e.g. a bad "
             "email)?", choices=YES_NO, next={"yes": "fix_failures", "no": "escalate_failures"}),
        Step("rerun", ACTION, "Run the Sage contact sync again to carry on", action="rerun_sage_contact_sync",
             mandatory=False, default_next="expected",
             help="Each batch was committed, so the new run picks up only what is still flagged."),
        Step("expected", OUTCOME, "Expected: let it complete", outcome=RESOLVED,
             message="Hello,\n\nYour branch {branch} was reconnected to Sage, and no contact had a Sage id yet, so "
                     "every contact is being uploaded again, in batches. This is expected and nothing will be "
                     "duplicated. Progress: {done} of {total} ({eta} left at the current rate).\n\n"
                     "You don't need to do anything; it finishes on its own."),
        Step("fix_failures", OUTCOME, "Ask the customer to fix the failed contacts", outcome=CUSTOMER_ACTION,
             message="Hello,\n\nThe Sage upload for {branch} is going well, but {failures} contacts were refused by "
                     "Sage. You'll find each one with Sage's reason on the branch's Sage page; once corrected, "
                     "they go up with the next sync."),
        Step("escalate_failures", OUTCOME, "Escalate the failures", outcome=ESCALATED,
             message="Mass re-sync of {branch} has {failures} failed contacts with no reason the customer can fix."),
        Step("not_mass_resync", OUTCOME, "Not a mass re-sync", outcome=ESCALATED,
             message="{branch}: contacts already have Sage ids, so this isn't the mass re-sync. Look at the sync "
                     "history instead."),
    ),
)

SAGE_ONE_AUS_LOGIN_CHANGED = Scenario(
    slug="sage-one-aus-login-changed",
    title="Sage One AUS login changed, sync broken",
    summary="The branch is bound to the username it first authenticated with. To use another login, the customer "
            "disconnects Sage One AUS and authenticates again with the new username.",
    provider="sage_one_aus",
    steps=(
        Step("username", CHECK, "Which username is stored?", check="sage_one_stored_username"),
        Step("failures", CHECK, "Recent credential failures", check="sage_one_credential_failures"),
        Step("lockout", CHECK, "Is the username locked out?", check="sage_one_lockout",
             next={"fail": "wait_for_lock"}),
        Step("which_change", QUESTION, "What changed for the customer?",
             choices=(("new_username", "They now use a different Sage One username"),
                      ("new_password", "Same username, new password"),
                      ("unsure", "Not sure")),
             next={"new_username": "disconnect_reauth", "new_password": "reenter_password",
                   "unsure": "disconnect_reauth"}),
        Step("wait_for_lock", OUTCOME, "Wait for the lock to lift, then re-authenticate", outcome=CUSTOMER_ACTION,
             message="Hello,\n\nSage One has locked the login {username} after too many failed sign-ins, until "
                     "{locked_until}. After that: sign in to the portal, open {branch}, choose \"Disconnect Sage One "
                     "AUS\", then \"Connect Sage One AUS\" with your new Sage One username and password."),
        Step("disconnect_reauth", OUTCOME, "Disconnect and re-authenticate with the new username",
             outcome=CUSTOMER_ACTION,
             message="Hello,\n\n{branch} is connected to Sage One AUS as {username}, and the portal only accepts that "
                     "same login until the branch is disconnected (so records never land in the wrong Sage "
                     "account). To use your new login:\n\n"
                     "1. Sign in to the portal yourself.\n"
                     "2. Open {branch} and choose \"Disconnect Sage One AUS\". Your data stays in the portal.\n"
                     "3. Choose \"Connect Sage One AUS\" and enter the new username and password.\n\n"
                     "The next sync will then run as usual."),
        Step("reenter_password", OUTCOME, "Re-enter the password", outcome=CUSTOMER_ACTION,
             message="Hello,\n\nSage One AUS no longer accepts the stored password for {username}. Sign in to the "
                     "portal, open {branch} and choose \"Connect Sage One AUS\" with the same username and your new "
                     "password. No need to disconnect."),
    ),
)

SAGE_VOID_STILL_SHOWN = Scenario(
    slug="sage-void-still-shown",
    title="Voided a record but Sage still shows it",
    summary="The void looks the invoice up unscoped, so it reaches soft-deleted invoices too. Check whether the void "
            "completed in Sage, or whether the record needs manual clean-up.",
    needs_invoice=True,
    steps=(
        Step("invoice", CHECK, "Was the invoice soft-deleted?", check="invoice_record",
             next={"fail": "no_invoice"}),
        Step("void_job", CHECK, "Did the void job run, and how did it end?", check="void_job"),
        Step("sage_now", CHECK, "What does Sage say about the invoice now?", check="sage_invoice_now",
             next={"pass": "done", "fail": "rerun_void", "warn": "manual_cleanup", "unknown": "rerun_void"}),
        Step("rerun_void", ACTION, "Run the void again", action="rerun_void", mandatory=False,
             default_next="after_rerun",
             help="The void checks Sage first, so a second run never voids twice."),
        Step("after_rerun", QUESTION, "Did the re-run void finish with the invoice void in Sage?", choices=YES_NO,
             next={"yes": "done", "no": "manual_cleanup"}),
        Step("done", OUTCOME, "Done: Sage has it void", outcome=RESOLVED,
             message="Hello,\n\nInvoice {invoice_number} is void in Sage. If you still see it, refresh the page in "
                     "Sage: it shows as void rather than disappearing."),
        Step("manual_cleanup", OUTCOME, "Manual clean-up in Sage", outcome=CUSTOMER_ACTION,
             message="Hello,\n\nInvoice {invoice_number} couldn't be voided from the portal ({void_outcome}). Please "
                     "remove it by hand in Sage: open Sales › Invoices, find invoice {invoice_number} (Sage id "
                     "{sage_id}), and void it there."),
        Step("no_invoice", OUTCOME, "No such invoice", outcome=ESCALATED,
             message="Invoice {invoice_number} isn't on {branch}, even among deleted invoices."),
    ),
)

SAGE_TOKEN_DIED = Scenario(
    slug="sage-refresh-token-died",
    title="Sage refresh token died (invalid_grant)",
    summary="Sage refused the refresh token, so the branch needs re-authentication. Reconnecting keeps the "
            "branch's data and Sage ids.",
    provider="sage",
    steps=(
        Step("token", CHECK, "Does Sage still accept the branch's sign-in?", check="sage_refresh_token",
             next={"pass": "alive"}),
        Step("jobs", CHECK, "Did the last sync fail because of it?", check="sync_jobs", mandatory=False),
        Step("reconnect", OUTCOME, "The customer reconnects Sage", outcome=CUSTOMER_ACTION,
             message="Hello,\n\nSage stopped accepting the sign-in for {branch} (this happens when a Sage sign-in is "
                     "revoked or unused for 31 days). Please sign in to the portal, open {branch} and choose "
                     "\"Reconnect to Sage\". Your contacts, invoices and their Sage ids are kept."),
        Step("alive", OUTCOME, "The sign-in is fine", outcome=RESOLVED,
             message="The Sage sign-in for {branch} is alive (refresh token valid until {refresh_token_expires_at})."),
    ),
)

SAGE_RATE_LIMITED = Scenario(
    slug="rate-limited",
    title="Sage rate-limited the branch",
    summary="Sage answered 429 and the branch is held off until the block lifts; calling earlier only extends it.",
    steps=(
        Step("limit", CHECK, "Is the branch rate-limited, and until when?", check="rate_limit",
             next={"pass": "rerun"}),
        Step("wait", OUTCOME, "Wait for the block to lift", outcome=CUSTOMER_ACTION,
             message="Hello,\n\nSage asked us to slow down for {branch} until {rate_limited_until}. The portal holds "
                     "off until then (calling earlier would extend the block); run the sync again after that time."),
        Step("rerun", ACTION, "The block has lifted: run the sync again", action="rerun_sync", mandatory=False,
             default_next="lifted"),
        Step("lifted", OUTCOME, "Resolved", outcome=RESOLVED,
             message="The rate limit on {branch} has lifted."),
    ),
)

SYNC_FAILED_OR_STUCK = Scenario(
    slug="sync-failed-or-stuck",
    title="A sync job failed or is stuck",
    summary="The last sync failed, or a queued/running sync has made no progress for a long time.",
    steps=(
        Step("jobs", CHECK, "Did the last sync fail, or is one stuck?", check="sync_jobs",
             next={"pass": "fine"}),
        Step("limit", CHECK, "Is the branch rate-limited?", check="rate_limit", mandatory=False,
             next={"fail": "wait"}),
        Step("cause_known", QUESTION, "Does the error say what to fix (sign-in, a record Sage refused)?",
             choices=YES_NO, next={"yes": "customer_fix", "no": "rerun"}),
        Step("rerun", ACTION, "Run the sync again", action="rerun_sync", mandatory=False, default_next="after_rerun"),
        Step("after_rerun", QUESTION, "Did the new run finish?", choices=YES_NO,
             next={"yes": "fine", "no": "escalate"}),
        Step("customer_fix", OUTCOME, "The customer fixes the cause", outcome=CUSTOMER_ACTION,
             message="Hello,\n\nThe last sync of {branch} stopped: {last_job_error}\n\nOnce that is sorted, run the "
                     "sync again from the branch's page."),
        Step("wait", OUTCOME, "Wait for the rate limit", outcome=CUSTOMER_ACTION,
             message="Hello,\n\nSage is limiting requests for {branch} until {rate_limited_until}; run the sync again "
                     "after that."),
        Step("fine", OUTCOME, "Sync is healthy", outcome=RESOLVED,
             message="The sync of {branch} is running or finished normally."),
        Step("escalate", OUTCOME, "Escalate", outcome=ESCALATED,
             message="The sync of {branch} keeps failing or hanging: {last_job_error}"),
    ),
)

ALL: tuple[Scenario, ...] = (
    SAGE_ONE_AUS_PUPPET_AUTH,
    SAGE_MASS_RESYNC,
    SAGE_ONE_AUS_LOGIN_CHANGED,
    SAGE_VOID_STILL_SHOWN,
    SAGE_TOKEN_DIED,
    SAGE_RATE_LIMITED,
    SYNC_FAILED_OR_STUCK,
)
BY_SLUG = {s.slug: s for s in ALL}


def get(slug: str) -> Scenario | None:
    """The scenario with this slug, or None."""
    return BY_SLUG.get(slug)
