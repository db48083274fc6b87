from portal import create_app
from portal.worker import build_worker


def test_healthz_reports_503_without_a_worker(app, client):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json == {"database": "up", "redis": "up", "workers": 0, "scheduler": "down",
                             "status": "degraded"}


def test_healthz_counts_a_live_worker(app, client):
    worker = build_worker(app, simple=True)
    worker.register_birth()
    try:
        response = client.get("/healthz")
        assert response.status_code == 200
        assert response.json["workers"] == 1 and response.json["status"] == "ok"
    finally:
        worker.register_death()


def test_healthz_reports_redis_down_without_leaking_the_url(app_settings):
    broken = create_app(dict(app_settings, REDIS_URL="redis://127.0.0.1:1/0"))
    response = broken.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["redis"] == "down" and response.json["database"] == "up"
    assert "127.0.0.1" not in response.get_data(as_text=True)


def test_healthz_reports_the_scheduler_while_one_leads(app, client, redis_client):
    from portal.scheduler import build_scheduler

    cron = build_scheduler(redis_client, app.config["RQ_QUEUE"])
    assert client.get("/healthz").json["scheduler"] == "down"
    assert cron.is_leader()
    assert client.get("/healthz").json["scheduler"] == "up"
    cron.register_death()
    assert client.get("/healthz").json["scheduler"] == "down"
