"""Routing failures (unknown path, wrong verb) answered in the style of the API that was addressed."""

from flask import jsonify, request
from werkzeug.exceptions import HTTPException


def handle_http_error(error: HTTPException):
    """Render 404/405 and friends as a v3.1 error array, a 2.0.0 message or plain JSON."""
    if error.response is not None:
        return error.response
    path = request.path
    if path.startswith("/v3.1/"):
        code = {404: "RecordNotFound", 405: "MethodNotAllowed"}.get(error.code, "UnexpectedError")
        body = [{"$severity": "error", "$dataCode": code, "$message": error.description, "$source": ""}]
    elif path.lower().startswith("/api/"):  # in ASP.NET Web API's words, like the 2.0.0 views
        if error.code == 404:
            body = {"Message": f"No HTTP resource was found that matches the request URI '{request.url}'."}
        elif error.code == 405:
            body = {"Message": f"The requested resource does not support http method '{request.method}'."}
        else:
            body = {"Message": error.description}
    else:
        body = {"error": error.name, "message": error.description}
    response = jsonify(body)
    response.status_code = error.code or 500
    if error.code == 405 and hasattr(error, "valid_methods") and error.valid_methods:
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response
