"""Human pages: what each business and company holds, so a person can see that a sync landed."""

from flask import Blueprint, current_app, redirect, render_template, request, url_for

from . import v31_records
from .state import SandboxState

bp = Blueprint("sandbox_pages", __name__)

SHOWN_PER_TABLE = 50


def _state() -> SandboxState:
    return current_app.extensions["sage_sandbox"]


def _latest(records: dict) -> list:
    return list(records.values())[-SHOWN_PER_TABLE:][::-1]


def _business_view(state: SandboxState, business) -> dict:
    contacts = business.contacts
    return {
        "id": business.id,
        "name": business.name,
        "contact_count": len(contacts),
        "invoice_count": len(business.invoices),
        "void_count": sum(1 for i in business.invoices.values() if i["status_id"] == "VOID"),
        "contacts": [{
            "id": c["id"],
            "name": c["name"],
            "reference": c.get("reference") or "",
            "types": ", ".join(c["contact_type_ids"]),
            "email": (c.get("main_contact_person") or {}).get("email") or "",
            "updated_at": v31_records.iso(c["updated_at"]),
        } for c in _latest(contacts)],
        "invoices": [{
            "id": i["id"],
            "number": i["invoice_number"],
            "contact": i["contact_name"],
            "date": i["date"],
            "total": f"{i['total']:.2f}",
            "status": i["status_id"],
            "void_reason": i["void_reason"] or "",
        } for i in _latest(business.invoices)],
    }


def _company_view(company) -> dict:
    customers = company.customers
    return {
        "id": company.id,
        "name": company.name,
        "customer_count": len(customers),
        "invoice_count": len(company.invoices),
        "credit_note_count": len(company.credit_notes),
        "customers": [{"id": c["ID"], "name": c.get("Name", ""), "email": c.get("Email", "")}
                      for c in _latest(customers)],
        "invoices": [{
            "id": i["ID"],
            "number": i["DocumentNumber"],
            "customer": customers.get(i["CustomerId"], {}).get("Name", i["CustomerName"]),
            "date": i["Date"],
            "total": f"{i['Total']:.2f}",
            "amount_due": f"{i['AmountDue']:.2f}",
            "status": i.get("Status", (1, "Unpaid"))[1],
        } for i in _latest(company.invoices)],
        "credit_notes": [{
            "id": n["ID"],
            "number": n["DocumentNumber"],
            "customer": customers.get(n["CustomerId"], {}).get("Name", n["CustomerName"]),
            "from_document": n.get("FromDocument") or "",
            "total": f"{n['Total']:.2f}",
        } for n in _latest(company.credit_notes)],
    }


@bp.get("/")
def root():
    """Send people who open the bare sandbox URL to the overview."""
    return redirect(url_for("sandbox_pages.overview"))


@bp.get("/_sandbox/")
def overview():
    """Show every seeded user with what their businesses and companies hold."""
    state = _state()
    with state.lock:
        sage_users = [{
            "email": u.email,
            "businesses": [_business_view(state, state.businesses[b]) for b in u.business_ids],
        } for u in state.sage_users.values()]
        sage_one_users = [{
            "username": u.username,
            "locked": u.locked_until > state.now(),
            "companies": [_company_view(state.companies[c]) for c in u.company_ids],
        } for u in state.sage_one_users.values()]
        snapshot = state.snapshot()
    refresh = request.args.get("refresh", type=int)
    return render_template("sandbox/overview.html", sage_users=sage_users, sage_one_users=sage_one_users,
                           snapshot=snapshot, refresh=refresh, shown=SHOWN_PER_TABLE,
                           client_id=state.client_id, api_key=state.sage_one_api_key)
