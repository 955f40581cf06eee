"""Launching directories: exit codes, and relaunching without new versions or uploads."""

from __future__ import annotations

from pathlib import Path
from typing import List, Mapping, Optional, Tuple

import liftoff
from liftoff.transport import Response, Stream, Transport

from conftest import Env, write_job


class Recording(Transport):
    """Passes every request on and remembers (method, path)."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.calls: List[Tuple[str, str]] = []

    def request(
        self, method: str, url: str, headers: Mapping[str, str], body: Optional[bytes], timeout: float
    ) -> Response:
        self.calls.append((method, url.split("/api/v1", 1)[1]))
        return self.inner.request(method, url, headers, body, timeout)

    def stream(self, url: str, headers: Mapping[str, str], timeout: float) -> Stream:
        self.calls.append(("GET", url.split("/api/v1", 1)[1]))
        return self.inner.stream(url, headers, timeout)

    def puts(self) -> List[str]:
        return [path for method, path in self.calls if method == "PUT"]


def versions(client: liftoff.Client, name: str) -> List[int]:
    return sorted(j.version for j in client.list_jobs() if j.name == name)


def test_launch_a_directory_finishes_and_its_output_is_stored(liftoff_env: Env, tmp_path: Path) -> None:
    job = write_job(
        tmp_path / "counter",
        """
        import sys
        for i in range(3):
            print(f"line {i}", flush=True)
        print("to stderr", file=sys.stderr, flush=True)
        """,
    )
    run = liftoff.launch(queue=liftoff_env.queue, path=job, entrypoint="python3 main.py")
    assert len(run.id) == 8 and run.item_id and run.state == "pending"
    result = run.wait(timeout=120)
    assert (result.state, result.exit_code) == ("finished", 0), result
    assert result.ok and run.state == "finished" and run.done
    lines = list(run.logs(follow=False))
    assert [ln.text for ln in lines if ln.stream == "stdout"] == ["line 0", "line 1", "line 2"]
    assert [ln.text for ln in lines if ln.stream == "stderr"] == ["to stderr"]
    item = liftoff_env.client().get_item(run.id)  # by run id
    assert item.id == run.item_id and item.spec.entrypoint == ["python3", "main.py"]
    assert item.spec.job.endswith("/default/counter:v1")


def test_a_failing_job_gives_failed_with_its_exit_code(liftoff_env: Env, tmp_path: Path) -> None:
    job = write_job(tmp_path / "fails", "import sys\nprint('bye')\nsys.exit(3)\n")
    run = liftoff.launch(queue=liftoff_env.queue, path=job, entrypoint=["python3", "main.py"])
    result = run.wait(timeout=120)
    assert (result.state, result.exit_code) == ("failed", 3), result
    assert not result.ok


def test_relaunching_an_unchanged_directory_creates_no_version_and_uploads_nothing(
    liftoff_env: Env, tmp_path: Path
) -> None:
    job = write_job(tmp_path / "again", "print('same code')\n")
    recorder = Recording(liftoff.transport.UrllibTransport())
    client = liftoff.Client(transport=recorder)  # from the environment, like liftoff.launch

    first = liftoff.launch(queue=liftoff_env.queue, path=job, entrypoint="python3 main.py", client=client)
    assert first.wait(timeout=120).state == "finished"
    assert versions(client, "again") == [1]
    assert len(recorder.puts()) == 1, recorder.calls  # the first launch uploads

    recorder.calls.clear()
    second = liftoff.launch(queue=liftoff_env.queue, path=job, entrypoint="python3 main.py", client=client)
    assert second.wait(timeout=120).state == "finished"
    assert versions(client, "again") == [1], "an unchanged directory made a new job version"
    assert recorder.puts() == [], f"an unchanged directory was uploaded again: {recorder.calls}"
    assert not any(m == "POST" and p.endswith("/jobs") for m, p in recorder.calls), recorder.calls
    assert client.get_item(second.item_id).spec.job.endswith("/default/again:v1")
    # without an entrypoint, the latest version's is kept: still v1, still no upload
    again = liftoff.launch(queue=liftoff_env.queue, path=job, client=client)
    assert client.get_item(again.item_id).spec.job.endswith("/default/again:v1")
    assert again.wait(timeout=120).state == "finished"
    assert versions(client, "again") == [1] and recorder.puts() == []

    # Another entrypoint: a new version, but the archive is referenced already: no upload.
    recorder.calls.clear()
    third = liftoff.launch(queue=liftoff_env.queue, path=job, entrypoint="python3 -u main.py", client=client)
    assert third.wait(timeout=120).state == "finished"
    assert versions(client, "again") == [1, 2]
    assert recorder.puts() == [], recorder.calls

    # Changed code: a new version and one upload (so the recorder does see uploads).
    (job / "main.py").write_text("print('new code')\n")
    recorder.calls.clear()
    fourth = liftoff.launch(queue=liftoff_env.queue, path=job, entrypoint="python3 -u main.py", client=client)
    assert fourth.wait(timeout=120).state == "finished"
    assert versions(client, "again") == [1, 2, 3]
    assert recorder.puts() == [f"/entities/default/blobs/{liftoff.sha256_digest(liftoff.pack_dir(job))}"]
    assert [ln.text for ln in fourth.logs(follow=False) if ln.stream == "stdout"] == ["new code"]


def test_launch_an_existing_job_by_name_with_args_and_config(liftoff_env: Env, tmp_path: Path) -> None:
    job = write_job(
        tmp_path / "echoer",
        """
        import json, os, sys
        print(json.loads(os.environ["LIFTOFF_CONFIG"])["greeting"], *sys.argv[1:], flush=True)
        """,
    )
    client = liftoff.Client()
    first = client.launch(liftoff_env.queue, path=job, entrypoint="python3 main.py", config={"greeting": "hi"})
    assert first.wait(timeout=120).ok
    again = client.launch(
        liftoff_env.queue, job="echoer", args=["a", "b c"], config={"greeting": "hello"}, priority="high"
    )
    assert again.wait(timeout=120).ok
    assert [ln.text for ln in again.logs(follow=False) if ln.stream == "stdout"] == ["hello a b c"]
    assert client.get_item(again.item_id).priority == "high"
    assert client.entity == "default"  # from /whoami
    assert any(q.name == liftoff_env.queue for q in client.list_queues())
    assert any(liftoff_env.queue in a.queues for a in client.list_agents())
