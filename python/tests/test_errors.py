"""The server's errors as exceptions naming the field at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

import liftoff
from liftoff.models import TemplateVariable

from conftest import Env, write_job


def test_launch_on_a_missing_queue_is_not_found(liftoff_env: Env, tmp_path: Path) -> None:
    job = write_job(tmp_path / "lost", "print('never')\n")
    with pytest.raises(liftoff.NotFound) as info:
        liftoff.launch(queue="no-such-queue", path=job, entrypoint="python3 main.py")
    e = info.value
    assert (e.status, e.code, e.field) == (404, "not_found", "queue")
    assert "no-such-queue" in e.message and "no-such-queue" in str(e)
    # the queue is checked first: no job was created for it
    assert not any(j.name == "lost" for j in liftoff.Client().list_jobs())


def test_a_bad_template_variable_names_the_variable(liftoff_env: Env, tmp_path: Path) -> None:
    client = liftoff.Client()
    queue = client.create_queue(
        "templated",
        "local-process",
        config={"env": {"EPOCHS": "{{epochs}}"}},
        template_variables=[TemplateVariable(name="epochs", type="integer", min=1, max=10)],
    )
    assert queue.template_variables[0].max == 10
    job = write_job(tmp_path / "tv", "import os\nprint(os.environ['EPOCHS'])\n")
    for bad in (50, "ten", 2.5):
        with pytest.raises(liftoff.Invalid) as info:
            client.launch("templated", path=job, entrypoint="python3 main.py", template_vars={"epochs": bad})
        assert info.value.field == "template_variables.epochs", (bad, info.value)
        assert info.value.status == 422
    # a good value is accepted (no agent serves this queue: stop the pending item)
    run = client.launch("templated", path=job, entrypoint="python3 main.py", template_vars={"epochs": 3})
    assert run.refresh().spec.resource_config == {"env": {"EPOCHS": 3}}  # typed, filled in
    run.stop()
    assert run.wait(timeout=30).state == "stopped"


def test_other_errors(liftoff_env: Env) -> None:
    client = liftoff.Client()
    with pytest.raises(liftoff.Conflict):
        client.create_queue(liftoff_env.queue)
    with pytest.raises(liftoff.Invalid) as info:
        client.create_queue("bad name!")
    assert info.value.field == "name"
    with pytest.raises(liftoff.NotFound) as nf:
        client.get_item("nonexistent-run")
    assert nf.value.field == "id"
    with pytest.raises(liftoff.Unauthorized):
        liftoff.Client(api_key="lft_wrong").whoami()
    with pytest.raises(liftoff.ConnectionFailed):
        liftoff.Client(base_url="http://127.0.0.1:1", api_key="k", entity="default").list_queues()
    with pytest.raises(ValueError):
        client.launch(liftoff_env.queue, job="x", image="y")


def test_configuration_without_a_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("LIFTOFF_API_KEY", "LIFTOFF_BASE_URL", "LIFTOFF_ENTITY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(liftoff.ConfigurationError):
        liftoff.Client()
    # ./liftoff-data/admin.key is the CLI's fallback, and ours
    (tmp_path / "liftoff-data").mkdir()
    (tmp_path / "liftoff-data" / "admin.key").write_text("lft_from_file\n")
    monkeypatch.setenv("LIFTOFF_ENTITY", "acme")
    c = liftoff.Client()
    assert c.entity == "acme" and c.base_url == "http://127.0.0.1:7434"
    assert "lft_from_file" not in repr(c)
