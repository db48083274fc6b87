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
        Step("branch", CHECK, "Sage One AUS on the branch", check="branch_on_sage_one_aus",
             next={"fail": "wrong_provider"}),
        Step("puppet", CHECK, "A puppet session", check="puppet_session",
             help="In a puppet session the portal never holds the customer's key, so Sage One AUS can't be "
                  "authenticated — whatever the page or request looks like."),
        Step("state", CHECK, "The Sage One AUS sign-in", check="sage_one_connection_state",
             next={"pass": "already_connected"}),
        Step("can_sign_in", QUESTION, "Can the customer sign in to the portal themselves?", choices=YES_NO,
             next={"yes": "guide_customer", "no": "escalate_access"}),
        Step("guide_customer", OUTCOME, "Send the customer the steps to authenticate", outcome=CUSTOMER_ACTION,
             message=(
                 "Hello,\n\nFor your security, Sage One AUS can only be connected by you: it uses your own Sage One "
                 "login, which our support team can't enter or unlock on your behalf.\n\n"
                 "1. Sign in to the portal with your own email and password.\n"
                 "2. On the Branches page, find {branch}.\n"
                 "3. Choose \"Connect Sage One AUS\" and enter your Sage One username and password"
                 "[[ (this branch was last connected as {username})]].\n"
                 "4. If you have more than one Sage One company, pick the one for {branch}.\n\n"
                 "Once it shows Connected, your sync will run as usual. Reply to this message if anything looks "
                 "different.")),
        Step("escalate_access", OUTCOME, "Escalate: the customer can't sign in", outcome=ESCALATED,
             message="The customer of {business} can't sign in to the portal to authenticate Sage One AUS for "
                     "{branch}; their portal access needs fixing first."),
        Step("already_connected", OUTCOME, "Nothing to authenticate: it is connected", outcome=RESOLVED,
             message="{branch} is connected to Sage One AUS[[ as {username}]], so there is nothing to "
                     "authenticate."),
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
        Step("flagged", CHECK, "A mass re-sync (every contact flagged, none with a Sage id)",
             check="mass_resync_flagged", next={"fail": "not_mass_resync", "other_provider": "not_on_sage"}),
        Step("changed", CHECK, "A recent change of the connection", check="connection_changed", mandatory=False),
        Step("progress", CHECK, "The contact sync's progress", check="contact_sync_progress",
             next={"running": "expected", "finished": "finished", "warn": "failures_reviewed", "fail": "rerun",
                   "unknown": "escalate_unread", "other_provider": "not_on_sage"}),
        Step("failures_reviewed", QUESTION, "Do the refused contacts have a reason the customer can fix (e.g. a bad "
             "email)?", choices=YES_NO, next={"yes": "fix_failures", "no": "escalate_failures"}),
        Step("rerun", ACTION, "Run the Sage contact sync again to carry on", action="rerun_sage_contact_sync",
             mandatory=False, next={"skipped": "customer_reruns"}, default_next="expected",
             help="Each batch was committed, so the new run picks up only what is still flagged."),
        Step("expected", OUTCOME, "Expected: let it complete", outcome=RESOLVED,
             message="Hello,\n\nNo contact of {branch} had a Sage id (this happens after a branch is reconnected to "
                     "Sage), so every contact is being uploaded to Sage again, in batches. This is expected and "
                     "nothing will be duplicated.[[ Progress: {done} of {total}[[, about {eta} left at the current "
                     "rate]].]]\n\nYou don't need to do anything; it finishes on its own."),
        Step("finished", OUTCOME, "Finished: every contact is in Sage", outcome=RESOLVED,
             message="Hello,\n\nThe upload of {branch}'s contacts to Sage has finished: every contact is in Sage, "
                     "and nothing was duplicated."),
        Step("customer_reruns", OUTCOME, "The customer runs the contact sync again", outcome=CUSTOMER_ACTION,
             message="Hello,\n\nThe upload of {branch}'s contacts to Sage stopped before it finished"
                     "[[ ({contacts_pending} contacts are still waiting)]]. Nothing is lost and nothing will be "
                     "duplicated: sign in to the portal, open {branch}'s Sage page and choose \"Sync contacts\" to "
                     "carry on from where it stopped."),
        Step("fix_failures", OUTCOME, "Ask the customer to fix the refused contacts", outcome=CUSTOMER_ACTION,
             message="Hello,\n\nSage refused some of {branch}'s contacts[[ ({failures} so far)]]. You'll find each "
                     "one with Sage's reason on the branch's Sage page; once corrected, they go up with the next "
                     "sync."),
        Step("escalate_failures", OUTCOME, "Escalate the refused contacts", outcome=ESCALATED,
             message="The contact upload of {branch} has contacts refused by Sage[[ ({failures})]] with no reason "
                     "the customer can fix."),
        Step("escalate_unread", OUTCOME, "Escalate: the progress couldn't be read", outcome=ESCALATED,
             message="The checklist couldn't read how far the contact upload of {branch} is; look at the branch's "
                     "jobs by hand."),
        Step("not_mass_resync", OUTCOME, "Not a mass re-sync", outcome=ESCALATED,
             message="{branch}: contacts already have Sage ids, so this isn't the mass re-sync. Look at the sync "
                     "history instead."),
        Step("not_on_sage", OUTCOME, "Not a Sage branch", outcome=RESOLVED,
             message="{branch} isn't connected to Sage, so no Sage contact upload applies."),
    ),
)

SAGE_ONE_AUS_LOGIN_CHANGED = Scenario(
    slug="sage-one-aus-login-changed",
    title="Sage One AUS login changed, sync broken",
    summary="The branch is bound to the username it first authenticated with. To use another login, the customer "
            "disconnects Sage One AUS and authenticates again with the new username.",
    provider="sage_one_aus",
    steps=(
        Step("username", CHECK, "A stored Sage One username", check="sage_one_stored_username",
             next={"other_provider": "not_sage_one", "pass": "connect_any_login", "unknown": "escalate_unread"}),
        Step("failures", CHECK, "Recent credential failures", check="sage_one_credential_failures"),
        Step("lockout", CHECK, "A lock on the username", check="sage_one_lockout",
             next={"fail": "wait_for_lock"}),
        Step("which_change", QUESTION, "What changed for the customer?",
             choices=(("new_username", "They now use a different Sage One username"),
                      ("new_password", "Same username, new password"),
                      ("unsure", "Not sure")),
             next={"new_username": "disconnect_reauth", "new_password": "reenter_password",
                   "unsure": "disconnect_reauth"}),
        Step("wait_for_lock", OUTCOME, "Wait for the lock to lift, then re-authenticate", outcome=CUSTOMER_ACTION,
             message="Hello,\n\nSage One has locked the login[[ {username}]] after too many failed sign-ins"
                     "[[, until {locked_until}]]. Once the lock has lifted, sign in to the portal, open {branch} and "
                     "choose \"Connect Sage One AUS\" with your current Sage One password. If you now use a "
                     "different Sage One username, choose \"Disconnect Sage One AUS\" first."),
        Step("disconnect_reauth", OUTCOME, "Disconnect and re-authenticate with the new username",
             outcome=CUSTOMER_ACTION,
             message="Hello,\n\n{branch} is connected to Sage One AUS[[ as {username}]], and the portal only "
                     "accepts that same login until the branch is disconnected (so records never land in the wrong "
                     "Sage account). To use your new login:\n\n"
                     "1. Sign in to the portal yourself.\n"
                     "2. Open {branch} and choose \"Disconnect Sage One AUS\". Your data stays in the portal.\n"
                     "3. Choose \"Connect Sage One AUS\" and enter the new username and password.\n\n"
                     "The next sync will then run as usual."),
        Step("reenter_password", OUTCOME, "Re-enter the password", outcome=CUSTOMER_ACTION,
             message="Hello,\n\nYour Sage One password changed, so the password the portal saved[[ for {username}]] "
                     "no longer works. Sign in to the portal, open {branch} and choose \"Connect Sage One AUS\" with "
                     "the same username and your new password. No need to disconnect."),
        Step("connect_any_login", OUTCOME, "Connect with the new login", outcome=CUSTOMER_ACTION,
             message="Hello,\n\n{branch} isn't bound to a Sage One login, so any login works. Sign in to the "
                     "portal, open {branch} and choose \"Connect Sage One AUS\" with your new Sage One username and "
                     "password."),
        Step("escalate_unread", OUTCOME, "Escalate: the check couldn't read it", outcome=ESCALATED,
             message="The checklist couldn't read the Sage One AUS login of {branch}; look at it by hand."),
        Step("not_sage_one", OUTCOME, "Not a Sage One AUS branch", outcome=RESOLVED,
             message="{branch} isn't connected to Sage One AUS, so no Sage One login is involved."),
    ),
)

_DRIFT_HELP = ("Two read-only lists from Sage: what was deleted or voided there since the portal last looked. "
               "Invoices voided there are recorded on the invoice and contacts deleted there are sent again at the "
               "next sync; the branch page shows both.")

SAGE_VOID_STILL_SHOWN = Scenario(
    slug="sage-void-still-shown",
    title="Voided a record but Sage still shows it",
    summary="The void looks the invoice up unscoped, so it reaches soft-deleted invoices too. Check whether the void "
            "completed in Sage, or whether the record needs manual clean-up.",
    needs_invoice=True,
    steps=(
        Step("invoice", CHECK, "The invoice in the portal, deleted ones included", check="invoice_record",
             next={"missing": "no_invoice"}),
        Step("void_job", CHECK, "The portal's void of the invoice", check="void_job"),
        Step("sage_now", CHECK, "The invoice in Sage now", check="sage_invoice_now",
             next={"void": "done", "void_outside": "record_void_outside",
                   "live": "rerun_void", "not_done": "rerun_void", "no_record": "rerun_void",
                   "unknown": "rerun_void", "missing": "look_for_drift", "never_sent": "never_sent",
                   "other_business": "other_business", "not_connected": "not_connected"}),
        Step("record_void_outside", ACTION, "Record what was voided in Sage outside the portal",
             action="look_for_drift", mandatory=False, default_next="done", help=_DRIFT_HELP),
        Step("look_for_drift", ACTION, "Ask Sage what changed there outside the portal", action="look_for_drift",
             mandatory=False, default_next="missing_in_sage", help=_DRIFT_HELP),
        Step("rerun_void", ACTION, "Run the void again", action="rerun_void", mandatory=False,
             next={"skipped": "manual_cleanup"}, default_next="after_rerun",
             help="The void checks Sage first, so a second run never voids twice."),
        Step("after_rerun", QUESTION, "Did the new void finish with the invoice void in Sage? (Run the checks "
             "again to see.)", choices=YES_NO, next={"yes": "done", "no": "manual_cleanup"}),
        Step("done", OUTCOME, "Done: Sage has it void", outcome=RESOLVED,
             message="Hello,\n\nInvoice {invoice_number} is void in {provider}. If you still see it, refresh the "
                     "page in {provider}: a void invoice stays listed, marked as void, rather than disappearing."),
        Step("manual_cleanup", OUTCOME, "Manual clean-up in Sage", outcome=CUSTOMER_ACTION,
             message="Hello,\n\nInvoice {invoice_number} is still not void in {provider}, and the portal can't "
                     "finish it from here[[ (the last attempt ended: “{void_failure}”)]]. Please void it by hand in "
                     "{provider}: find invoice {invoice_number}[[ (its {provider} id is {sage_id})]] and void it "
                     "there."),
        Step("missing_in_sage", OUTCOME, "Sage has no invoice with its id", outcome=CUSTOMER_ACTION,
             message="Hello,\n\n{provider} has no invoice with the id the portal holds for invoice "
                     "{invoice_number}[[ ({sage_id})]]: it was deleted in {provider}, or it belongs to another "
                     "{provider} business. If you still see invoice {invoice_number} in {provider}, please void it "
                     "there by hand."),
        Step("never_sent", OUTCOME, "Never sent: nothing of the portal's is in Sage", outcome=CUSTOMER_ACTION,
             message="Hello,\n\nInvoice {invoice_number} was never sent to {provider} from the portal, so the "
                     "portal has nothing to void there. If {provider} shows an invoice {invoice_number}, it was "
                     "entered in {provider} directly: please void it there by hand."),
        Step("other_business", OUTCOME, "In the Sage business the branch used before", outcome=CUSTOMER_ACTION,
             message="Hello,\n\n[[On {ids_cleared_at}, ]]{branch} switched to another Sage business"
                     "[[ ({sage_business})]], and the portal no longer works with the business it used before. "
                     "Invoice {invoice_number} has not been sent to the new business, so if Sage still shows it, it "
                     "is in the earlier business[[ (with the id {previous_sage_id})]]: please open that business "
                     "in Sage and void invoice {invoice_number} there by hand."),
        Step("not_connected", OUTCOME, "Escalate: the branch isn't connected", outcome=ESCALATED,
             message="{branch} isn't connected, so the portal can't check or void invoice {invoice_number} in "
                     "Sage."),
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
        Step("token", CHECK, "A problem with the branch's Sage sign-in", check="sage_refresh_token",
             next={"pass": "alive", "warn": "expiring", "other_provider": "not_on_sage",
                   "unknown": "escalate_unread"}),
        Step("jobs", CHECK, "A failed or stuck sync", check="sync_jobs", mandatory=False),
        Step("reconnect", OUTCOME, "The customer reconnects Sage", outcome=CUSTOMER_ACTION,
             message="Hello,\n\nSage stopped accepting the sign-in for {branch} (this happens when a Sage sign-in is "
                     "revoked or unused for 31 days). Please sign in to the portal, open {branch} and choose "
                     "\"Reconnect to Sage\". Your contacts, invoices and their Sage ids are kept."),
        Step("expiring", OUTCOME, "The customer reconnects before the sign-in lapses", outcome=CUSTOMER_ACTION,
             message="Hello,\n\nThe Sage sign-in for {branch} lapses[[ on {refresh_token_expires_at}]] unless a "
                     "sync uses it first (Sage ends sign-ins unused for 31 days). To keep it, run a sync from "
                     "{branch}'s Sage page, or choose \"Reconnect to Sage\". Your contacts, invoices and their "
                     "Sage ids are kept."),
        Step("alive", OUTCOME, "The sign-in is fine", outcome=RESOLVED,
             message="The Sage sign-in for {branch} is alive[[ (valid until {refresh_token_expires_at})]]."),
        Step("escalate_unread", OUTCOME, "Escalate: the check couldn't read it", outcome=ESCALATED,
             message="The checklist couldn't read the Sage sign-in of {branch}; look at it by hand."),
        Step("not_on_sage", OUTCOME, "Not a Sage branch", outcome=RESOLVED,
             message="{branch} isn't connected to Sage, so no Sage sign-in is involved."),
    ),
)

SAGE_RATE_LIMITED = Scenario(
    slug="rate-limited",
    title="Sage rate-limited the branch",
    summary="Sage answered 429 and the branch is held off until the block lifts; calling earlier only extends it.",
    steps=(
        Step("limit", CHECK, "A rate limit on the branch", check="rate_limit",
             next={"pass": "rerun", "not_connected": "not_connected", "unknown": "escalate_unread"}),
        Step("wait", OUTCOME, "Wait for the block to lift", outcome=CUSTOMER_ACTION,
             message="Hello,\n\n{provider} asked us to slow down for {branch}[[ until {rate_limited_until}]]. The "
                     "portal holds off until the block lifts (calling earlier would extend it); run the sync again "
                     "after that."),
        Step("rerun", ACTION, "The block has lifted: run the sync again", action="rerun_sync", mandatory=False,
             default_next="lifted"),
        Step("lifted", OUTCOME, "Resolved", outcome=RESOLVED,
             message="The rate limit on {branch} has lifted."),
        Step("escalate_unread", OUTCOME, "Escalate: the check couldn't read it", outcome=ESCALATED,
             message="The checklist couldn't read the rate limit of {branch}; look at it by hand."),
        Step("not_connected", OUTCOME, "The branch isn't connected", outcome=RESOLVED,
             message="{branch} isn't connected, so no rate limit applies to it."),
    ),
)

SYNC_FAILED_OR_STUCK = Scenario(
    slug="sync-failed-or-stuck",
    title="A sync job failed or is stuck",
    summary="The last sync failed, or a queued/running sync has made no progress for a long time.",
    steps=(
        Step("jobs", CHECK, "A failed or stuck sync", check="sync_jobs",
             next={"pass": "fine", "stuck": "escalate_stuck", "no_sync": "no_sync", "unknown": "escalate_unread"}),
        Step("limit", CHECK, "A rate limit on the branch", check="rate_limit", mandatory=False,
             next={"fail": "wait"}),
        Step("cause_known", QUESTION, "Does the error say what to fix (sign-in, a record Sage refused)?",
             choices=YES_NO, next={"yes": "customer_fix", "no": "rerun"}),
        Step("rerun", ACTION, "Run the sync again", action="rerun_sync", mandatory=False,
             next={"skipped": "escalate"}, default_next="after_rerun"),
        Step("after_rerun", QUESTION, "Did the new run finish? (Run the checks again to see.)", choices=YES_NO,
             next={"yes": "fine", "no": "escalate"}),
        Step("customer_fix", OUTCOME, "The customer fixes the cause", outcome=CUSTOMER_ACTION,
             message="Hello,\n\nThe last sync of {branch} didn't send everything[[ (it said: “{last_job_error}”)]]. "
                     "The reason for each record is on the branch's page under “Waiting or failed”. Once the cause "
                     "is fixed, run the sync again from there."),
        Step("wait", OUTCOME, "Wait for the rate limit", outcome=CUSTOMER_ACTION,
             message="Hello,\n\n{provider} is limiting requests for {branch}[[ until {rate_limited_until}]]; run the "
                     "sync again after the block lifts."),
        Step("fine", OUTCOME, "Sync is healthy", outcome=RESOLVED,
             message="The sync of {branch} is running or finished normally."),
        Step("escalate", OUTCOME, "Escalate", outcome=ESCALATED,
             message="The sync of {branch} failed[[ (“{last_job_error}”)]] and the cause isn't clear from the error; "
                     "it needs a closer look."),
        Step("escalate_stuck", OUTCOME, "Escalate: a sync is stuck", outcome=ESCALATED,
             message="The sync[[ “{job}”]] of {branch} has made no progress for a long time[[ (it is "
                     "{job_status})]]; look at the workers and the job."),
        Step("escalate_unread", OUTCOME, "Escalate: the check couldn't read it", outcome=ESCALATED,
             message="The checklist couldn't read the sync jobs of {branch}; look at them by hand."),
        Step("no_sync", OUTCOME, "No sync has run yet", outcome=RESOLVED,
             message="{branch} has never run a sync, so none failed or is stuck; the first one starts from the "
                     "branch's page."),
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
