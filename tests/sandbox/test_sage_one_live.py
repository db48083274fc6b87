"""Sage One 2.0.0 answers as the live API does (reference Part F): the wrong-key page, 404/405 wording and `Allow`,
doubled slashes, `includeCustomerDetails`, the API help's fields, the two 429s, and the block and 429 counters."""

import pytest
import requests

from sage_sandbox.sage_one import LOCKOUT_REASON, RATE_LIMIT_REASON
from sage_sandbox.seed import PASSWORD

from .helpers import API_KEY, MAITLAND, NEWCASTLE
from .test_sage_one import JSON, new_customer, new_tax_invoice, url

NO_RESOURCE = "No HTTP resource was found that matches the request URI '"
NEWCASTLE_LOGIN = ("newcastle@harbour-auto.test", PASSWORD)

CUSTOMER_FIELDS = {
    "ID", "Name", "Category", "SalesRepresentativeId", "SalesRepresentative", "TaxReference", "ContactName",
    "Telephone", "Fax", "Mobile", "Email", "WebAddress", "Active", "IsObfuscated", "Balance", "CreditLimit",
    "CommunicationMethod", *(f"PostalAddress0{n}" for n in range(1, 6)), *(f"DeliveryAddress0{n}" for n in range(1, 6)),
    "AutoAllocateToOldestInvoice", "EnableCustomerZone", "CustomerZoneGuid", "CashSale",
    *(f"{kind}{n}" for kind in ("TextField", "NumericField", "YesNoField", "DateField") for n in range(1, 4)),
    "DefaultPriceListId", "DefaultPriceList", "DefaultPriceListName", "AcceptsElectronicInvoices", "Modified",
    "Created", "BusinessRegistrationNumber", "TaxStatusVerified", "CurrencyId", "CurrencySymbol", "HasActivity",
    "DefaultDiscountPercentage", "DefaultTaxTypeId", "DefaultTaxType", "DueDateMethodId", "DueDateMethodValue",
}
INVOICE_FIELDS = {
    "ID", "Date", "DueDate", "CustomerId", "CustomerName", "Customer", "SalesRepresentativeId", "SalesRepresentative",
    "StatusId", "Status", "Paid", "Locked", "Editable", "Printed", "Inclusive", "DiscountPercentage", "TaxReference",
    "DocumentNumber", "Reference", "Message", "Discount", "Exclusive", "Tax", "Rounding", "Total", "AmountDue",
    *(f"{kind}0{n}" for kind in ("PostalAddress", "DeliveryAddress") for n in range(1, 6)),
    "FromDocument", "FromDocumentId", "FromDocumentTypeId", "AllowOnlinePayment", "TaxPeriodId", "CurrencyId",
    "Customer_CurrencyId", "Customer_ExchangeRate", "HasAttachments", "HasNotes", "HasAnticipatedDate",
    "AnticipatedDate", "ExternalReference", "UID", "Modified", "Created", "Lines",
}
LINE_FIELDS = {
    "ID", "SelectionId", "TaxTypeId", "Description", "LineType", "Quantity", "UnitPriceExclusive",
    "UnitPriceInclusive", "Unit", "TaxPercentage", "DiscountPercentage", "Exclusive", "Discount", "Tax", "Total",
    "Comments", "AnalysisCategoryId1", "AnalysisCategoryId2", "AnalysisCategoryId3", "$TrackingCode", "CurrencyId",
    "UnitCost", "UID",
}
ACCOUNT_FIELDS = {"ID", "Name", "Category", "Active", "Balance", "Description", "ReportingGroupId",
                  "UnallocatedAccount", "IsTaxLocked", "Modified", "Created", "AccountType", "HasActivity",
                  "DefaultTaxTypeId", "DefaultTaxType"}
COMPANY_FIELDS = {
    "ID", "Name", "CurrencySymbol", "CurrencyDecimalDigits", "NumberDecimalDigits", "DecimalSeparator",
    "HoursDecimalDigits", "ItemCostPriceDecimalDigits", "ItemSellingPriceDecimalDigits",
    *(f"PostalAddress{n}" for n in range(1, 6)), "GroupSeparator", "RoundingValue", "TaxSystem", "RoundingType",
    "AgeMonthly", "DisplayInactiveItems", "WarnWhenItemCostIsZero", "DoNotAllowProcessingIntoNegativeQuantities",
    "WarnWhenItemQuantityIsZero", "WarnWhenItemSellingBelowCost", "CountryId", "CompanyEntityTypeId",
    "TakeOnBalanceDate", "EnableCustomerZone", "EnableAutomaticBankFeedRefresh", "ContactName", "Telephone", "Fax",
    "Mobile", "Email", "IsPrimarySendingEmail", *(f"PostalAddress0{n}" for n in range(1, 6)),
    *(f"CompanyInfo0{n}" for n in range(1, 6)), "IsOwner", "UseCCEmail", "CCEmail", "DateFormatId",
    "CheckForDuplicateCustomerReferences", "CheckForDuplicateSupplierReferences", "DisplayName",
    "DisplayInactiveCustomers", "DisplayInactiveSuppliers", "DisplayInactiveTimeProjects",
    "UseInclusiveProcessingByDefault", "LockProcessing", "LockProcessingDate", "LockTimesheetProcessing",
    "LockTimesheetProcessingDate", "TaxPeriodFrequency", "PreviousTaxPeriodEndDate", "PreviousTaxReturnDate",
    "UseNoreplyEmail", "AgeingBasedOnDueDate", "UseLogoOnEmails", "UseLogoOnCustomerZone", "City", "State",
    "Country", "HomeCurrencyId", "CurrencyId", "Created", "Modified", "Active", "TaxNumber", "RegisteredName",
    "RegistrationNumber", "IsPracticeAccount", "LogoPositionID", "Attachment", "CompanyTaxNumber", "TaxOffice",
    "CustomerZoneGuid", "ClientTypeId", "DisplayTotalTypeId", "DisplayInCompanyConsole", "LastLoginDate", "Status",
}


# ------------------------------------------------------------------ authentication failures

def test_wrong_api_key_is_an_iis_html_page_with_x_apikey_invalid(sandbox, http):
    response = requests.get(url(sandbox, "Company/Get", apikey="{00000000-0000-0000-0000-000000000000}"),
                            headers=JSON, auth=NEWCASTLE_LOGIN)
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "text/html" and response.headers["X-APIKey"] == "Invalid"
    assert "401 - Unauthorized: Access is denied due to invalid credentials." in response.text
    assert "WWW-Authenticate" not in response.headers
    with pytest.raises(ValueError):
        response.json()
    # the key is refused before the credentials are read, so no failed login is counted
    assert http.get("/_sandbox/state").json()["sage_one_users"]["newcastle@harbour-auto.test"][
        "recent_failures"] == 0


def test_wrong_password_is_401_with_the_apis_json_message(sandbox):
    response = requests.get(url(sandbox, "Company/Get", apikey=API_KEY), headers=JSON,
                            auth=("newcastle@harbour-auto.test", "wrong"))
    assert response.status_code == 401 and "X-APIKey" not in response.headers
    assert response.json() == {"Message": "Authorization has been denied for this request."}
    assert response.headers["Content-Type"].startswith("application/json")


# ------------------------------------------------------------------ routing

@pytest.mark.parametrize("method, path, allowed", [
    ("POST", "/Customer/Get", "GET"), ("GET", "/Customer/Save", "POST"), ("PATCH", "/TaxInvoice/Get", "GET"),
    ("GET", "/Customer/Delete/1", "DELETE"), ("PUT", "/CustomerReturn/Save", "POST"),
])
def test_wrong_verb_is_405_with_allow(aus, method, path, allowed):
    response = aus.request(method, path)
    assert response.status_code == 405 and response.headers["Allow"] == allowed
    assert response.json()["Message"] == f"The requested resource does not support http method '{method}'."


def test_switched_off_invoice_delete_is_405_allowing_nothing(aus):
    invoice = new_tax_invoice(aus, new_customer(aus)["ID"])
    response = aus.delete(f"/TaxInvoice/Delete/{invoice['ID']}")
    assert response.status_code == 405 and response.headers["Allow"] == ""


def test_every_404_reads_no_http_resource_was_found(sandbox, aus):
    other = new_customer(aus)
    sandbox.state.sage_one_users["newcastle@harbour-auto.test"].company_ids.append(MAITLAND)
    answers = [
        aus.get("/Spaceship/Get"), aus.get("/Customer/Launch"), aus.get("/Customer/Get/999999"),
        aus.get(f"/Customer/Get/{other['ID']}", params={"CompanyId": MAITLAND}),
        aus.get("/TaxInvoice/Get/999999"), aus.get("/Company/Get/1"),
        aus.get("/Customer/Get", params={"CompanyId": 99999}),
        aus.session.get(f"{sandbox.url}/api/9.9.9/Customer/Get"),
        aus.session.get(f"{sandbox.url}/api/2.0.0"),
    ]
    for response in answers:
        assert response.status_code == 404
        message = response.json()["Message"]
        assert message.startswith(NO_RESOURCE) and response.request.url.split("?")[0] in message


@pytest.mark.parametrize("path", ["/api/2.0.0//Company/Get", "/api/2.0.0//Customer//Get", "//api/2.0.0/Company/Get",
                                  "/API/2.0.0//company/get"])
def test_a_doubled_slash_is_served_like_a_single_one(sandbox, path):
    response = requests.get(f"{sandbox.url}{path}?apikey={API_KEY}&CompanyId={NEWCASTLE}", headers=JSON,
                            auth=NEWCASTLE_LOGIN, allow_redirects=False)
    assert response.status_code == 200, response.text
    assert "TotalResults" in response.json()


# ------------------------------------------------------------------ invoices with details

def test_include_customer_details_nests_the_customer_and_include_detail_fills_lines(aus):
    customer = new_customer(aus, Name="Hunter Fleet", PostalAddress01="4 Bolton St", DeliveryAddress01="Bay 2")
    invoice = new_tax_invoice(aus, customer["ID"])
    plain = aus.get("/TaxInvoice/Get").json()["Results"][0]
    assert plain["Customer"] is None and plain["Lines"] == []
    nested = aus.get("/TaxInvoice/Get", params={"includeCustomerDetails": "true"}).json()["Results"][0]
    assert nested["Customer"]["ID"] == customer["ID"] and nested["Customer"]["Name"] == "Hunter Fleet"
    assert set(nested["Customer"]) >= CUSTOMER_FIELDS and nested["Lines"] == []
    both = aus.get("/TaxInvoice/Get", params={"includeDetail": "true", "includeCustomerDetails": "true"}).json()
    assert len(both["Results"][0]["Lines"]) == 1 and both["Results"][0]["Customer"]["PostalAddress01"] == "4 Bolton St"
    single = aus.get(f"/TaxInvoice/Get/{invoice['ID']}", params={"includecustomerdetails": "TRUE"}).json()
    assert single["Customer"]["ID"] == customer["ID"] and len(single["Lines"]) == 1
    assert aus.get(f"/TaxInvoice/Get/{invoice['ID']}").json()["Customer"] is None


def test_invoice_addresses_come_from_the_customer_unless_sent(aus):
    customer = new_customer(aus, PostalAddress01="4 Bolton St", PostalAddress02="Newcastle", DeliveryAddress01="Bay 2")
    invoice = new_tax_invoice(aus, customer["ID"])
    assert invoice["PostalAddress01"] == "4 Bolton St" and invoice["PostalAddress02"] == "Newcastle"
    assert invoice["DeliveryAddress01"] == "Bay 2" and invoice["PostalAddress05"] == ""
    sent = new_tax_invoice(aus, customer["ID"], PostalAddress01="PO Box 9", ExternalReference="JOB-77")
    assert sent["PostalAddress01"] == "PO Box 9" and sent["ExternalReference"] == "JOB-77"


# ------------------------------------------------------------------ fields of the API help's samples

def test_records_carry_the_fields_of_the_api_help_samples(aus):
    customer = new_customer(aus, DefaultTaxTypeId=aus.get("/TaxType/Get").json()["Results"][0]["ID"])
    assert set(customer) >= CUSTOMER_FIELDS
    assert customer["DefaultPriceList"] == {"ID": 1, "Description": "Selling Price", "IsDefault": True}
    assert customer["DefaultPriceListName"] == "Selling Price" and customer["DefaultTaxType"]["Name"] == "GST"
    assert len(customer["CustomerZoneGuid"]) == 36 and customer["DateField1"] is None
    invoice = new_tax_invoice(aus, customer["ID"])
    assert set(invoice) >= INVOICE_FIELDS and set(invoice["Lines"][0]) >= LINE_FIELDS
    assert invoice["Customer_ExchangeRate"] == 1.0 and invoice["AllowOnlinePayment"] is False
    account = aus.get("/Account/Get").json()["Results"][0]
    assert set(account) >= ACCOUNT_FIELDS
    assert {"Comment", "Order", "Created", "Modified"} <= set(account["Category"])
    assert account["DefaultTaxType"]["ID"] == account["DefaultTaxTypeId"]
    company = aus.get("/Company/Get").json()["Results"][0]
    assert set(company) >= COMPANY_FIELDS
    assert company["PostalAddress01"] == company["PostalAddress1"] and company["TaxPeriodFrequency"]


def test_sage_one_numbers_stay_json_numbers(aus):
    invoice = new_tax_invoice(aus, new_customer(aus)["ID"])
    for value in (invoice["Total"], invoice["Tax"], invoice["Lines"][0]["Quantity"],
                  invoice["Lines"][0]["TaxPercentage"], invoice["Lines"][0]["UnitCost"]):
        assert isinstance(value, (int, float)) and not isinstance(value, bool)
    customer = aus.get(f"/Customer/Get/{invoice['CustomerId']}").json()
    assert customer["Balance"] == 220.0
    assert aus.get("/TaxType/Get").json()["Results"][0]["Percentage"] == 10.0


# ------------------------------------------------------------------ the two 429s

def _lock_out(sandbox) -> requests.Response:
    target = url(sandbox, "Company/Get", apikey=API_KEY)
    for n in range(20):
        requests.get(target, headers=JSON, auth=("newcastle@harbour-auto.test", f"bad{n}"))
    return requests.get(target, headers=JSON, auth=("newcastle@harbour-auto.test", "bad-again"))


@pytest.mark.parametrize("sandbox_config", [{"SANDBOX_SAGE_ONE_RATE_LIMIT": 2}])
def test_rate_limit_and_lock_out_429s_differ_in_wording_and_the_optional_header(sandbox, aus):
    [aus.get("/TaxType/Get") for _ in range(2)]
    limited = aus.get("/TaxType/Get")
    locked = _lock_out(sandbox)
    assert limited.status_code == locked.status_code == 429
    assert limited.json() == {"Message": RATE_LIMIT_REASON}
    assert locked.json() == {"Message": "Your Username has exceeded the allowed number of login attempts and has "
                                        "been blocked for 24 hours"} == {"Message": LOCKOUT_REASON}
    assert limited.headers["X-RequestLimit-ExceededReason"] == RATE_LIMIT_REASON
    assert "X-RequestLimit-ExceededReason" not in locked.headers
    # both say "blocked": only the whole wording and the context tell them apart
    assert "blocked" in RATE_LIMIT_REASON and "blocked" in LOCKOUT_REASON
    still_locked = requests.get(url(sandbox, "Company/Get", apikey=API_KEY), headers=JSON, auth=NEWCASTLE_LOGIN)
    assert still_locked.status_code == 429 and still_locked.json()["Message"] == LOCKOUT_REASON


@pytest.mark.parametrize("sandbox_config", [{"SANDBOX_SAGE_ONE_RATE_LIMIT": 2,
                                             "SANDBOX_SAGE_ONE_EXCEEDED_REASON_HEADER": False}])
def test_the_exceeded_reason_header_can_be_left_out(sandbox, aus):
    statuses = [aus.get("/TaxType/Get") for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 429, 429]
    for response in statuses[2:]:
        assert "X-RequestLimit-ExceededReason" not in response.headers
        assert response.json() == {"Message": RATE_LIMIT_REASON}
    assert "X-RequestLimit-ExceededReason" not in _lock_out(sandbox).headers


# ------------------------------------------------------------------ counters

@pytest.mark.parametrize("sandbox_config", [{"SANDBOX_SAGE_ONE_RATE_LIMIT": 2, "SANDBOX_SAGE_ONE_BLOCK_SECONDS": 10}])
def test_state_counts_blocks_and_429s_per_company(sandbox, http, aus):
    assert [aus.get("/TaxType/Get").status_code for _ in range(5)] == [200, 200, 429, 429, 429]
    sandbox.state.advance_clock(11)
    assert [aus.get("/TaxType/Get").status_code for _ in range(3)] == [200, 200, 429]
    assert [aus.get("/Company/Get").status_code for _ in range(3)] == [200, 200, 429]  # no company named
    state = http.get("/_sandbox/state").json()
    newcastle = state["companies"][str(NEWCASTLE)]
    assert (newcastle["blocks"], newcastle["rate_limited"], newcastle["blocked"]) == (2, 4, True)
    assert state["companies"][str(MAITLAND)]["blocks"] == 0
    assert state["rate_limits"]["sage_one_blocks"] == 3 and state["rate_limits"]["sage_one_rate_limit_429"] == 5


def test_state_counts_lock_outs_per_user(sandbox, http):
    _lock_out(sandbox)
    requests.get(url(sandbox, "Company/Get", apikey=API_KEY), headers=JSON, auth=NEWCASTLE_LOGIN)
    state = http.get("/_sandbox/state").json()
    user = state["sage_one_users"]["newcastle@harbour-auto.test"]
    assert user["locked"] and user["lockouts"] == 1 and user["locked_429"] == 2
    assert state["rate_limits"]["sage_one_lockouts"] == 1 and state["rate_limits"]["sage_one_lockout_429"] == 2
    assert state["rate_limits"]["sage_one_blocks"] == 0


def test_a_non_ascii_password_is_checked_not_answered_with_500(sandbox, http):
    assert http.post("/_sandbox/sage-one/users/newcastle@harbour-auto.test/password",
                     json={"password": "pässwörd-ключ"}).ok
    target = url(sandbox, "Company/Get", apikey=API_KEY)
    right = requests.get(target, headers=JSON, auth=(b"newcastle@harbour-auto.test", "pässwörd-ключ".encode()))
    wrong = requests.get(target, headers=JSON, auth=(b"newcastle@harbour-auto.test", "pässwörd".encode()))
    assert (right.status_code, wrong.status_code) == (200, 401)
