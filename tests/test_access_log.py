"""Access logs never carry a query string: not the OAuth callback's code and state, not a reset token."""
import logging
import runpy
import threading
from datetime import timedelta
from pathlib import Path

import requests
from gunicorn.config import Config
from werkzeug.serving import make_server

from devtools.redis_server import free_port
from portal.access_log import GunicornLogger

ROOT = Path(__file__).resolve().parents[1]
SECRET_URL = "/integrations/sage/callback?code=GB/secret-code-123&state=secret-state-456"


def test_werkzeugs_request_log_has_no_query_string(app, caplog):
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            requests.get(f"http://127.0.0.1:{port}{SECRET_URL}", allow_redirects=False, timeout=5)
            requests.get(f"http://127.0.0.1:{port}/password/reset?token=secret-token-789",
                         allow_redirects=False, timeout=5)
    finally:
        server.shutdown()
        thread.join(timeout=5)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "GET /integrations/sage/callback HTTP/1.1" in logged and "/reset HTTP/1.1" in logged
    for secret in ("secret-code-123", "secret-state-456", "secret-token-789", "?"):
        assert secret not in logged


class _Response:
    status = "302 FOUND"
    sent = 0
    headers = []


def test_gunicorns_access_log_has_no_query_string_in_the_line_or_the_referrer(tmp_path):
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert conf["logger_class"] == "portal.access_log.GunicornLogger"
    cfg = Config()
    cfg.set("accesslog", str(tmp_path / "access.log"))
    cfg.set("access_log_format", Config().access_log_format + ' "%({referer}i)s" %(q)s')
    logger = GunicornLogger(cfg)
    path, _, query = SECRET_URL.partition("?")
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": SECRET_URL, "PATH_INFO": path, "QUERY_STRING": query,
               "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
               "HTTP_REFERER": "http://127.0.0.1/password/reset?token=secret-token-789"}
    request_headers = [("REFERER", environ["HTTP_REFERER"])]
    logger.access(_Response(), request_headers, environ, timedelta(milliseconds=3))
    for handler in logger.access_log.handlers:
        handler.flush()
    line = (tmp_path / "access.log").read_text()
    assert "GET /integrations/sage/callback HTTP/1.1" in line and "/reset" in line
    for secret in ("secret-code-123", "secret-state-456", "secret-token-789"):
        assert secret not in line
